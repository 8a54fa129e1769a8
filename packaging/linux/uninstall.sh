#!/bin/sh
# Take Darkroom out of your desktop's application menu (what install.sh added). Your pictures, settings and
# models stay where they are; delete the Darkroom folder itself to remove the program.
set -eu

DATA=${XDG_DATA_HOME:-$HOME/.local/share}
APPS="$DATA/applications"
HICOLOR="$DATA/icons/hicolor"

rm -f "$APPS/darkroom.desktop"
for size in 16 32 48 64 128 256 512; do
    rm -f "$HICOLOR/${size}x${size}/apps/darkroom.png"
done
rm -f "$HICOLOR/scalable/apps/darkroom.svg"

if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$APPS" 2>/dev/null || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$HICOLOR" 2>/dev/null || true
fi
echo "Darkroom is no longer in your application menu."
