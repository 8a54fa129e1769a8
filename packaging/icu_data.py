"""Trim the ICU data that Qt brings into the Linux bundle: 31 MiB, of which Darkroom needs about 3.

Qt's Linux build links ICU, whose data library (``libicudata.so.<N>``) holds every locale's names of
languages, regions, currencies and units, 230 legacy text encodings, break-iterator dictionaries and
transliterators. Qt uses ICU for four things only: collation (``QCollator``: sorting in file dialogs), time-zone
display names, locale-aware case mapping and legacy text encodings (``QStringDecoder("Shift_JIS")``). Darkroom's
interface is English and reads and writes UTF-8 only, so the trimmed data keeps:

- the root locale and English (every locale's collation falls back to the root order, the Unicode default);
- the root and English time-zone names, and the time-zone rules;
- the supplemental tables (plurals, likely subtags, numbering systems…), normalization and Unicode properties;
- the converter alias table, but no legacy encodings (UTF-8/16/32, ASCII and Latin-1 are built into ICU's code).

Everything else goes: locale-specific collation, names of languages, regions, currencies and units, number
spell-out rules, transliterators, break-iterator rules and dictionaries (Qt breaks text itself) and the
confusables table. How: ``icupkg`` (ICU's own packaging tool) removes those items from the data, and the C
compiler assembles the rest into a library with the same name and symbol. Needs ``icupkg`` (Debian:
``icu-devtools``) and a C compiler; without them the build keeps Qt's library as it is and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIBRARY = re.compile(r"^libicudata\.so\.(\d+)$")
#: A locale's resource bundle: ``de.res``, ``en_GB.res``, ``sr_Latn_BA.res``, ``de_.res``.
LOCALE_BUNDLE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]*)*\.res$")
#: Folders of locale data kept in root and English only; every other folder goes whole.
PER_LOCALE_KEPT = ("coll", "zone")
#: Shared by a folder's bundles: kept wherever the folder is.
SHARED = ("root.res", "res_index.res", "pool.res")


def _english_or_shared(base: str) -> bool:
    return base in SHARED or base == "en.res" or base.startswith("en_")


def keep(item: str) -> bool:
    """Whether the trimmed data keeps ``item``, a name as ``icupkg -l`` lists it (``coll/de.res``)."""
    *folders, base = item.split("/")
    if not folders:
        if base.endswith(".cnv") or base == "confusables.cfu":
            return False
        return _english_or_shared(base) or not LOCALE_BUNDLE.match(base)
    if folders[0] in PER_LOCALE_KEPT:
        return _english_or_shared(base) or not base.endswith(".res")
    return False


def find_library(bundle: Path) -> Path | None:
    for path in sorted((bundle / "_internal").rglob("libicudata.so.*")):
        if LIBRARY.match(path.name) and path.is_file() and not path.is_symlink():
            return path
    return None


def _symbol(library: Path, version: str) -> tuple[int, int]:
    """The file offset and size of the data symbol (``icudt73_dat``) in ``library``."""
    name = f"icudt{version}_dat"
    listing = subprocess.run(["nm", "-D", "-S", "--defined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == name:
            address, size = int(fields[0], 16), int(fields[1], 16)
            return _file_offset(library, address), size
    raise ValueError(f"{library.name} has no symbol {name}")


def _file_offset(library: Path, address: int) -> int:
    """The file offset of a virtual ``address``, from the loadable segments ``readelf -l`` lists."""
    listing = subprocess.run(["readelf", "-lW", str(library)], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"]:
            offset, vaddr, filesz = int(fields[1], 16), int(fields[2], 16), int(fields[4], 16)
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
    raise ValueError(f"{library.name}: address {address:#x} is in no loadable segment")


def _assembly(symbol: str, data: Path) -> str:
    return (f"    .section .rodata\n    .globl {symbol}\n    .type {symbol}, @object\n    .balign 16\n"
            f"{symbol}:\n    .incbin \"{data}\"\n    .size {symbol}, . - {symbol}\n"
            '    .section .note.GNU-stack,"",@progbits\n')


def trim(bundle: Path, say=print) -> int:
    """Replace the bundle's ICU data library with a trimmed one; returns the bytes saved (0 when skipped)."""
    if not sys.platform.startswith("linux"):
        return 0
    library = find_library(bundle)
    if library is None:
        return 0
    tools = {name: shutil.which(name) for name in ("icupkg", "cc", "nm", "readelf")}
    if not all(tools.values()):
        missing = ", ".join(name for name, path in tools.items() if path is None)
        say(f"ICU data kept whole ({library.stat().st_size / 2**20:.0f} MiB): {missing} not found "
            "(Debian: apt-get install icu-devtools gcc)")
        return 0
    version = LIBRARY.match(library.name).group(1)
    package = f"icudt{version}l"  # icupkg names the items after the file: it must keep ICU's own name
    with tempfile.TemporaryDirectory(prefix="darkroom-icu-") as tmp:
        work = Path(tmp)
        offset, size = _symbol(library, version)
        with open(library, "rb") as lib:
            lib.seek(offset)
            (work / f"{package}.dat").write_bytes(lib.read(size))
        listing = subprocess.run([tools["icupkg"], "-l", f"{package}.dat"], cwd=work, capture_output=True,
                                 text=True, check=True).stdout
        items = [line.strip() for line in listing.splitlines() if line.strip()]
        removed = [item for item in items if not keep(item)]
        (work / "remove.txt").write_text("\n".join(removed) + "\n", encoding="utf-8")
        (work / "out").mkdir()
        subprocess.run([tools["icupkg"], "-r", "remove.txt", f"{package}.dat", f"out/{package}.dat"], cwd=work,
                       capture_output=True, check=True)
        (work / "data.S").write_text(_assembly(f"icudt{version}_dat", work / "out" / f"{package}.dat"))
        built = work / library.name
        subprocess.run([tools["cc"], "-shared", "-nostdlib", f"-Wl,-soname,{library.name}", "-o", str(built),
                        str(work / "data.S")], check=True, capture_output=True)
        before = library.stat().st_size
        shutil.copyfile(built, library)
    saved = before - library.stat().st_size
    say(f"ICU data trimmed to root and English: {len(items) - len(removed)} of {len(items)} items kept, "
        f"{saved / 2**20:.1f} MiB saved")
    return saved
