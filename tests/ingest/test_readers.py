"""Every input format and encoding pipelines will send, built as tiny fixtures."""

import codecs

import pytest

from tagger.errors import UnreadableDocument
from tagger.ingest.documents import load_documents
from tagger.ingest.readers import decode_bytes, read_text
from tagger.ingest.segment import segment

TEXT = "第一条 对新引进的人工智能企业，按实际租金的５０％给予补贴。\n第二条 支持建设算力平台，给予最高１０００万元资金支持。"


def _clauses(path):
    docs = load_documents(path)
    return [c.text for d in docs for c in segment(d)]


def test_utf8_txt(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text(TEXT, encoding="utf-8")
    texts = _clauses(p)
    # full-width digits are normalised, Chinese punctuation is kept
    assert texts == ["第一条对新引进的人工智能企业，按实际租金的50%给予补贴。", "第二条支持建设算力平台，给予最高1000万元资金支持。"]


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_gbk_txt(tmp_path, encoding):
    p = tmp_path / "gbk.txt"
    p.write_bytes(TEXT.encode(encoding))
    assert _clauses(p)[0].startswith("第一条对新引进的人工智能企业")


@pytest.mark.parametrize("bom,codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF8, "utf-8")])
def test_bom_encodings(tmp_path, bom, codec):
    p = tmp_path / "bom.txt"
    p.write_bytes(bom + TEXT.encode(codec))
    assert len(_clauses(p)) == 2


def test_undecodable_bytes_raise_named_error():
    with pytest.raises(UnreadableDocument, match="not valid UTF-8"):
        decode_bytes(b"\x80abc\xff\x80", "x.txt")


def test_markdown(tmp_path):
    p = tmp_path / "a.md"
    p.write_text("# 若干措施\n\n## 一、支持企业\n\n**第一条** 对新引进的企业给予最高500万元奖励。\n", encoding="utf-8")
    docs = load_documents(p)
    clauses = segment(docs[0])
    assert [c.text for c in clauses] == ["第一条对新引进的企业给予最高500万元奖励。"]
    assert clauses[0].section.endswith("一、支持企业")


def test_html(tmp_path):
    p = tmp_path / "a.html"
    html = (
        "<html><head><title>t</title><style>p{color:red}</style><script>var x='扫码';</script></head>"
        "<body><h2>一、支持企业</h2><p>对新引进的企业，\n给予最高500万元奖励。</p>"
        "<p>对租用办公用房的，按租金的50%给予补贴。</p></body></html>"
    )
    p.write_text(html, encoding="gb18030")  # web pages are often GBK
    clauses = segment(load_documents(p)[0])
    assert [c.text for c in clauses] == ["对新引进的企业，给予最高500万元奖励。", "对租用办公用房的，按租金的50%给予补贴。"]
    assert all(c.section == "一、支持企业" for c in clauses)


def test_docx(tmp_path):
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_paragraph("一、人才支持")
    d.add_paragraph("（一）对引进的顶尖人才团队，给予最高1亿元综合资助。")
    t = d.add_table(rows=1, cols=2)
    t.cell(0, 0).text = "支持事项"
    t.cell(0, 1).text = "对新认定的国家级人工智能开放创新平台给予一次性奖励500万元"
    p = tmp_path / "a.docx"
    d.save(p)
    texts = _clauses(p)
    assert texts[0] == "（一）对引进的顶尖人才团队，给予最高1亿元综合资助。"
    assert "对新认定的国家级人工智能开放创新平台给予一次性奖励500万元" in texts[1]


def test_pdf_with_page_furniture(tmp_path):
    pytest.importorskip("reportlab")
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    p = tmp_path / "a.pdf"
    c = canvas.Canvas(str(p))
    pages = [
        ["人工智能产业政策", "第一条 对新引进的人工智能企业，按实际租金的50%给予补", "贴，最长三年。", "- 1 -"],
        ["人工智能产业政策", "第二条 对首台（套）产品给予保费补贴。", "- 2 -"],
        ["人工智能产业政策", "第三条 本政策自发布之日起施行。", "- 3 -"],
    ]
    for lines in pages:
        c.setFont("STSong-Light", 11)
        for i, line in enumerate(lines):
            c.drawString(60, 800 - 20 * i, line)
        c.showPage()
    c.save()
    texts = _clauses(p)
    # the line broken mid-word is joined; running title and page numbers are gone
    assert texts == [
        "第一条对新引进的人工智能企业，按实际租金的50%给予补贴，最长三年。",
        "第二条对首台（套）产品给予保费补贴。",
        "第三条本政策自发布之日起施行。",
    ]


@pytest.mark.parametrize(
    "name,content,reason",
    [("a.xlsx", b"PK", "unsupported file type"), ("a.docx", b"not a zip", "not a valid .docx"), ("a.pdf", b"%PDF-garbage", "cannot parse .pdf")],
)
def test_bad_files_raise_named_error(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(UnreadableDocument, match=reason):
        read_text(p)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableDocument, match="no such file"):
        read_text(tmp_path / "nope.txt")
