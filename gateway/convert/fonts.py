"""The fonts text faxes are set in: DejaVu, as Debian's ``fonts-dejavu-core`` installs it.

Consumes: nothing. Produces: ``TextFonts`` (the paths), or None when a file is missing;
``serve`` then sends text as TXT for eFax's own renderer and says so once at start-up.
Touches: the file system, only to see that the files are there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway.core.textpdf import TextFonts

_PLACES: Final = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu (fonts-dejavu-core)
    Path("/usr/share/fonts/dejavu"),  # Fedora, Arch
    Path("/usr/share/fonts/TTF"),
)


def find_text_fonts() -> TextFonts | None:
    """DejaVu Sans Mono, Sans Bold and Sans, from the first folder that has all three."""
    for place in _PLACES:
        mono, bold, sans = (
            place / name for name in ("DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans.ttf")
        )
        if mono.is_file() and bold.is_file() and sans.is_file():
            return TextFonts(str(mono), str(bold), str(sans))
    return None
