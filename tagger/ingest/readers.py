"""Turn a file of any supported format into raw text lines.

Each reader returns plain text with one paragraph or PDF line per line; repairing
PDF artefacts is the job of :mod:`tagger.ingest.repair`, not of the readers.
"""

from __future__ import annotations

import codecs
import io
import re
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from ..errors import UnreadableDocument

__all__ = ["SUPPORTED_SUFFIXES", "DocumentTooLarge", "ReadingTooSlow", "decode_bytes", "read_bytes", "read_text", "text_size"]

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
MAX_PDF_PAGES = 500  # the default of max_pages (the API's: TAGGER_MAX_PDF_PAGES)
# Elements nested deeper than this in document.xml: refused while parsing. Real documents
# nest ~10-30 deep (tables in tables included); 10 MB of nested elements took ~260 MB and
# 1.3 s to build into a tree.
MAX_DOCX_XML_DEPTH = 256


class DocumentTooLarge(UnreadableDocument):
    """More text or pages than the caller's limit (``max_chars``, ``max_pages``): reading
    stopped there. The API answers it with 413."""


class ReadingTooSlow(UnreadableDocument):
    """Still reading at the caller's ``deadline``: reading stopped there (``page`` of
    ``pages``)."""

    def __init__(self, path: str, page: int, pages: int):
        self.page, self.pages = page, pages
        super().__init__(path, f"reading took too long (stopped at page {page} of {pages})")


def text_size(text: str) -> int:
    """Characters of ``text`` that are not white space: what counts against ``max_chars``
    (normalisation drops white space, so a raw count would refuse documents that fit)."""
    return sum(map(len, text.split()))


def _check_size(name: str, text: str, max_chars: int | None, where: str = "") -> None:
    if max_chars is not None and (n := text_size(text)) > max_chars:
        raise DocumentTooLarge(name, f"more than {max_chars} characters of text{where} ({n}); the limit is {max_chars}")


class _TooDeep(Exception):
    pass


def _parse_docx_xml(xml: bytes, name: str):
    """document.xml as a tree. Past 1 MB of XML, a first pass (expat, no tree) refuses it
    as soon as an element is nested deeper than MAX_DOCX_XML_DEPTH: the tree of 10 MB of
    nested elements took ~260 MB and 1.3 s to build. Smaller ones cannot cost much."""
    if len(xml) > 1 << 20:
        from xml.parsers import expat

        depth = 0

        def start(_name, _attrs):
            nonlocal depth
            depth += 1
            if depth > MAX_DOCX_XML_DEPTH:
                raise _TooDeep

        def end(_name):
            nonlocal depth
            depth -= 1

        parser = expat.ParserCreate()
        parser.StartElementHandler, parser.EndElementHandler = start, end
        try:
            parser.Parse(xml, True)
        except _TooDeep:
            raise UnreadableDocument(name, f"document.xml nests elements more than {MAX_DOCX_XML_DEPTH} deep") from None
        except expat.ExpatError as exc:
            raise ElementTree.ParseError(str(exc)) from None
    return ElementTree.fromstring(xml)


def _docx_to_text(src, name: str, max_chars: int | None = None) -> str:
    with zipfile.ZipFile(src) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise UnreadableDocument(name, f"zip with {len(infos)} members; the limit is {MAX_ZIP_MEMBERS}")
        if sum(i.file_size for i in infos) > MAX_ZIP_TOTAL_BYTES:
            raise UnreadableDocument(name, f"zip expands to more than {MAX_ZIP_TOTAL_BYTES} bytes")
        info = zf.getinfo("word/document.xml")
        if info.file_size > MAX_DOCX_XML_BYTES:
            raise UnreadableDocument(name, f"document.xml expands to {info.file_size} bytes; the limit is {MAX_DOCX_XML_BYTES}")
        with zf.open(info) as fh:
            xml = fh.read(MAX_DOCX_XML_BYTES + 1)
        if len(xml) > MAX_DOCX_XML_BYTES:
            raise UnreadableDocument(name, f"document.xml larger than {MAX_DOCX_XML_BYTES} bytes")
    body = _parse_docx_xml(xml, name).find(f"{_W}body")
    del xml
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

    size = 0
    for child in body:
        start = len(lines)
        if child.tag == f"{_W}p":
            lines.append(para_text(child))
        elif child.tag == f"{_W}tbl":
            for row in child.iter(f"{_W}tr"):
                cells = [" ".join(para_text(p) for p in tc.iter(f"{_W}p")) for tc in row.iter(f"{_W}tc")]
                lines.append("\t".join(cells))
        if max_chars is not None and len(lines) > start:
            size += sum(text_size(line) for line in lines[start:])
            if size > max_chars:
                raise DocumentTooLarge(name, f"more than {max_chars} characters of text; the limit is {max_chars}")
    return "\n".join(lines)


def _pdf_to_text(src, name: str, max_chars: int | None = None, max_pages: int | None = MAX_PDF_PAGES,
                 deadline: float | None = None) -> str:
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pypdf is a runtime dependency
        raise UnreadableDocument(name, "PDF support needs the 'pypdf' package") from exc
    reader = PdfReader(src)
    if reader.is_encrypted:
        raise UnreadableDocument(name, "PDF is encrypted")
    n_pages = len(reader.pages)
    if max_pages is not None and n_pages > max_pages:
        raise DocumentTooLarge(name, f"PDF with {n_pages} pages; the limit is {max_pages}")
    texts: list[str] = []
    size = 0
    for i, page in enumerate(reader.pages, 1):
        if deadline is not None and time.monotonic() > deadline:
            raise ReadingTooSlow(name, i, n_pages)
        texts.append(page.extract_text() or "")
        if max_chars is not None:
            # Stop at the page that passes the limit: a PDF whose pages share one huge
            # content stream yields its text again on every page.
            size += text_size(texts[-1])
            if size > max_chars:
                raise DocumentTooLarge(name, f"more than {max_chars} characters of text in the first {i} of {n_pages} pages; "
                                             f"the limit is {max_chars}")
    # Pages are separated by a form feed so that the repair step can find page furniture.
    return "\n\f\n".join(texts)


_MD_MARKUP = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?)|\*\*|__|`")


def _markdown_to_text(text: str) -> str:
    return "\n".join(_MD_MARKUP.sub("", line) for line in text.split("\n"))


def read_text(path: Path, *, max_chars: int | None = None, max_pages: int | None = MAX_PDF_PAGES,
              deadline: float | None = None) -> str:
    """Read a document file and return its text (not yet normalised).

    ``max_chars``: :class:`DocumentTooLarge` once the text passes this many characters
    (white space not counted); a PDF stops being read at the page that passes it.
    ``max_pages``: PDFs with more pages are refused (DocumentTooLarge). ``deadline``
    (``time.monotonic()``): a PDF stops being read at the first page that starts after it
    (:class:`ReadingTooSlow`); the API also kills a worker process still reading a little
    after it (one page can take minutes)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise UnreadableDocument(str(path), "no such file")
    if path.is_dir():
        raise UnreadableDocument(str(path), "is a directory")
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableDocument(str(path), f"unsupported file type '{suffix or '(none)'}'")
    return _read(path, suffix, str(path), path.name, max_chars, max_pages, deadline)


def read_bytes(data: bytes, suffix: str, name: str = "<upload>", *, max_chars: int | None = None,
               max_pages: int | None = MAX_PDF_PAGES, deadline: float | None = None) -> str:
    """:func:`read_text` for a file's contents in memory (an upload): ``suffix`` says its
    format; ``name`` is what error messages call it (never a path on the server)."""
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableDocument(name, f"unsupported file type '{suffix or '(none)'}'")
    return _read(data, suffix, name, name, max_chars, max_pages, deadline)


def _read(src: Path | bytes, suffix: str, where: str, name: str, max_chars, max_pages, deadline) -> str:
    try:
        if suffix in (".docx", ".pdf"):
            file = io.BytesIO(src) if isinstance(src, bytes) else src
            if suffix == ".docx":
                text = _docx_to_text(file, name, max_chars)
            else:
                text = _pdf_to_text(file if isinstance(file, io.BytesIO) else str(file), name, max_chars, max_pages, deadline)
            _check_size(name, text, max_chars)
            return text
        data = src if isinstance(src, bytes) else src.read_bytes()
    except UnreadableDocument:
        raise
    except FileNotFoundError as exc:
        raise UnreadableDocument(where, "no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableDocument(where, "is a directory") from exc
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise UnreadableDocument(where, f"not a valid .docx file ({exc})") from exc
    except OSError as exc:
        raise UnreadableDocument(where, exc.strerror or str(exc)) from exc
    except RecursionError as exc:
        raise UnreadableDocument(where, f"cannot parse {suffix} (nested too deeply)") from exc
    except Exception as exc:  # pypdf raises many private error types
        raise UnreadableDocument(where, f"cannot parse {suffix} ({type(exc).__name__}: {exc})") from exc
    text = decode_bytes(data, where)
    if suffix in (".html", ".htm"):
        text = _html_to_text(text)
    elif suffix == ".md":
        text = _markdown_to_text(text)
    _check_size(name, text, max_chars)
    return text
