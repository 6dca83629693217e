"""Turn a file of any supported format into raw text lines.

Each reader returns plain text with one paragraph or PDF line per line; repairing
PDF artefacts is the job of :mod:`tagger.ingest.repair`, not of the readers.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from ..errors import UnreadableDocument

__all__ = ["SUPPORTED_SUFFIXES", "decode_bytes", "read_text"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".docx", ".pdf")


def decode_bytes(data: bytes, name: str = "<bytes>") -> str:
    """Decode bytes as UTF-8 / UTF-16 (BOM) / GB18030, in that order.

    GB18030 is a superset of GBK and GB2312, so GBK files decode through it.  Strict
    decoding is tried first so that a UTF-8 file is never mis-read as GB18030.
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8")
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    # A BOM-less UTF-16 file is full of NUL bytes in alternate positions.
    if data[1::2].count(0) > len(data) // 4:
        try:
            return data.decode("utf-16-le")
        except UnicodeDecodeError:
            pass
    raise UnreadableDocument(name, "not valid UTF-8, UTF-16 or GB18030/GBK text")


class _HTMLText(HTMLParser):
    _BLOCK = {
        "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
        "section", "article", "table", "ul", "ol", "header", "footer", "blockquote", "pre",
    }
    _SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            # Inside a block, source newlines are only formatting.
            self.parts.append(data.replace("\n", " "))


def _html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


# A .docx is a zip: its declared sizes bound what reading it can cost (zipfile never
# inflates a member past its declared size). Real policy documents are far below these.
MAX_ZIP_MEMBERS = 2000
MAX_DOCX_XML_BYTES = 10 * 1024 * 1024  # parsed into a tree: ~10x this in memory
MAX_ZIP_TOTAL_BYTES = 200 * 1024 * 1024
MAX_PDF_PAGES = 500


def _docx_to_text(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise UnreadableDocument(path.name, f"zip with {len(infos)} members; the limit is {MAX_ZIP_MEMBERS}")
        if sum(i.file_size for i in infos) > MAX_ZIP_TOTAL_BYTES:
            raise UnreadableDocument(path.name, f"zip expands to more than {MAX_ZIP_TOTAL_BYTES} bytes")
        info = zf.getinfo("word/document.xml")
        if info.file_size > MAX_DOCX_XML_BYTES:
            raise UnreadableDocument(path.name, f"document.xml expands to {info.file_size} bytes; the limit is {MAX_DOCX_XML_BYTES}")
        with zf.open(info) as fh:
            xml = fh.read(MAX_DOCX_XML_BYTES + 1)
        if len(xml) > MAX_DOCX_XML_BYTES:
            raise UnreadableDocument(path.name, f"document.xml larger than {MAX_DOCX_XML_BYTES} bytes")
    body = ElementTree.fromstring(xml).find(f"{_W}body")
    if body is None:
        return ""
    lines: list[str] = []

    def para_text(p) -> str:
        out = []
        for node in p.iter():
            if node.tag == f"{_W}t" and node.text:
                out.append(node.text)
            elif node.tag == f"{_W}tab":
                out.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                out.append("\n")
        return "".join(out)

    for child in body:
        if child.tag == f"{_W}p":
            lines.append(para_text(child))
        elif child.tag == f"{_W}tbl":
            for row in child.iter(f"{_W}tr"):
                cells = [" ".join(para_text(p) for p in tc.iter(f"{_W}p")) for tc in row.iter(f"{_W}tc")]
                lines.append("\t".join(cells))
    return "\n".join(lines)


def _pdf_to_text(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pypdf is a runtime dependency
        raise UnreadableDocument(str(path), "PDF support needs the 'pypdf' package") from exc
    reader = PdfReader(str(path))
    if reader.is_encrypted:
        raise UnreadableDocument(str(path), "PDF is encrypted")
    if len(reader.pages) > MAX_PDF_PAGES:
        raise UnreadableDocument(path.name, f"PDF with {len(reader.pages)} pages; the limit is {MAX_PDF_PAGES}")
    # Pages are separated by a form feed so that the repair step can find page furniture.
    return "\n\f\n".join(page.extract_text() or "" for page in reader.pages)


_MD_MARKUP = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?)|\*\*|__|`")


def _markdown_to_text(text: str) -> str:
    return "\n".join(_MD_MARKUP.sub("", line) for line in text.split("\n"))


def read_text(path: Path) -> str:
    """Read a document file and return its text (not yet normalised)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise UnreadableDocument(str(path), "no such file")
    if path.is_dir():
        raise UnreadableDocument(str(path), "is a directory")
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableDocument(str(path), f"unsupported file type '{suffix or '(none)'}'")
    try:
        if suffix == ".docx":
            return _docx_to_text(path)
        if suffix == ".pdf":
            return _pdf_to_text(path)
        data = path.read_bytes()
    except UnreadableDocument:
        raise
    except FileNotFoundError as exc:
        raise UnreadableDocument(str(path), "no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableDocument(str(path), "is a directory") from exc
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise UnreadableDocument(str(path), f"not a valid .docx file ({exc})") from exc
    except OSError as exc:
        raise UnreadableDocument(str(path), exc.strerror or str(exc)) from exc
    except Exception as exc:  # pypdf raises many private error types
        raise UnreadableDocument(str(path), f"cannot parse {suffix} ({type(exc).__name__}: {exc})") from exc
    text = decode_bytes(data, str(path))
    if suffix in (".html", ".htm"):
        return _html_to_text(text)
    if suffix == ".md":
        return _markdown_to_text(text)
    return text
