#!/bin/sh
# Add Darkroom to your desktop's application menu, for you only (no root needed): a launcher in
# ~/.local/share/applications and the icon in ~/.local/share/icons (or under $XDG_DATA_HOME). PNG images get an
# "Open with Darkroom", which opens the window with the picture's parameters.
#
#   ./install.sh                               from the unpacked bundle (the Darkroom folder)
#   install.sh --exec COMMAND --icons FOLDER   for another launcher (packaging/bootstrap.py shortcut: a checkout)
#
# ./uninstall.sh takes it away again.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
EXEC="$HERE/Darkroom"
ICONS="$HERE/_internal/resources/icons"
TEMPLATE="$HERE/darkroom.desktop"

while [ $# -gt 0 ]; do
    case "$1" in
        --exec) EXEC=$2; shift 2 ;;
        --icons) ICONS=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ ! -x "$EXEC" ]; then
    echo "install.sh: $EXEC is not an executable; run this script from the unpacked Darkroom folder" >&2
    exit 1
fi
case "$EXEC" in
    *'"'*|*'`'*|*'$'*|*'\'*)
        echo "install.sh: the path $EXEC holds a quote, a dollar sign or a backslash; move Darkroom elsewhere" >&2
        exit 1 ;;
esac
case "$EXEC" in
    /*) ;;
    *) EXEC="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")" ;;
esac

DATA=${XDG_DATA_HOME:-$HOME/.local/share}
APPS="$DATA/applications"
HICOLOR="$DATA/icons/hicolor"

for size in 16 32 48 64 128 256 512; do
    if [ -f "$ICONS/darkroom-$size.png" ]; then
        mkdir -p "$HICOLOR/${size}x${size}/apps"
        cp "$ICONS/darkroom-$size.png" "$HICOLOR/${size}x${size}/apps/darkroom.png"
    fi
done
if [ -f "$ICONS/darkroom.svg" ]; then
    mkdir -p "$HICOLOR/scalable/apps"
    cp "$ICONS/darkroom.svg" "$HICOLOR/scalable/apps/darkroom.svg"
fi

# In a desktop entry a literal % is written %%; for sed, & and | are escaped.
exec_field=$(printf '%s' "$EXEC" | sed -e 's/%/%%/g' -e 's/[&|]/\\&/g')
mkdir -p "$APPS"
sed -e "s|@EXEC@|$exec_field|g" -e "s|@ICON@|darkroom|g" "$TEMPLATE" > "$APPS/darkroom.desktop.tmp"
chmod 644 "$APPS/darkroom.desktop.tmp"
mv "$APPS/darkroom.desktop.tmp" "$APPS/darkroom.desktop"

if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$APPS" 2>/dev/null || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$HICOLOR" 2>/dev/null || true
fi
echo "Darkroom is in your application menu: $APPS/darkroom.desktop (runs $EXEC)"
