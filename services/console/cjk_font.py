"""A Chinese font for one PDF: Noto Sans SC, cut to the characters the document uses.

The font comes with the install (the ``pylopdf-fonts-zh-cn`` wheel carries Google's and
Adobe's ``NotoSansSC-Regular.otf``, SIL Open Font License 1.1); nothing is fetched and no
system font is looked for. It has PostScript (CFF) outlines, which fpdf2 embeds through a
custom encoding CMap that text extractors (pypdf, pdfminer.six) do not read back: a copied or
searched statement would come out garbled. So each document gets its own font: fontTools keeps
only the glyphs of the document's characters (about 0.3 s, mostly reading the 8 MB source) and
redraws them with TrueType outlines (a few ms), which fpdf2 embeds the ordinary way (Identity-H
with a ToUnicode map). A statement's font is then some 10-30 KB. (fpdf2 reads fonts from
files only: the statement writes it to a temporary directory, ``/tmp`` being writable in the
Kubernetes manifests.)
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable
from pylopdf_fonts_zh_cn import sans_path

# Printable ASCII always: the figures, ids and dates a statement is made of.
_ALWAYS = frozenset(range(0x20, 0x7F))
# The CFF-only tables a TrueType font must not carry.
_POSTSCRIPT_ONLY = ("CFF ", "VORG", "DSIG")


def source_font() -> Path:
    """The OpenType file shipped with the install."""
    return Path(sans_path())


def chinese_font(texts: Iterable[str]) -> bytes:
    """A TrueType font (``.ttf`` bytes) with the glyphs of every character in ``texts``."""
    font = TTFont(source_font(), lazy=True, recalcTimestamp=False)
    options = subset.Options()
    options.layout_features = []  # no shaping: Chinese and Latin are set glyph by glyph
    options.name_IDs = ["*"]  # the copyright and licence entries stay with the font
    options.hinting = False
    options.desubroutinize = True
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_ALWAYS | {ord(c) for text in texts for c in text})
    subsetter.subset(font)
    _to_truetype(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _to_truetype(font: TTFont) -> None:
    """Redraws the cubic CFF outlines as quadratic ``glyf`` ones (1 font unit of tolerance)."""
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    for tag in _POSTSCRIPT_ONLY:
        if tag in font:
            del font[tag]
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    font.sfntVersion = "\x00\x01\x00\x00"
    font["head"].glyphDataFormat = 0
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                  "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    post = font["post"]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}
    post.glyphOrder = order
