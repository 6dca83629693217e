"""PDF/web artefact repair, on real excerpts from the corpus."""

from tagger.ingest.documents import document_from_text
from tagger.ingest.repair import repair_lines
from tagger.ingest.segment import segment
from tagger.ingest.textnorm import normalize_text


def _paras(raw: str) -> list[str]:
    return repair_lines(normalize_text(raw).split("\n"))


def test_joins_line_broken_mid_sentence_across_blank_line():
    # miit-2018-ai-industry-three-year-action-plan.txt, lines 17-19
    raw = (
        "全面贯彻落实党的十九大精神，以习近平新时代中国特色社会主义思想为指导，完善公共支撑体系，促进新一代人工智能\n"
        "\n"
        "产业发展，推动制造强国和网络强国建设，助力实体经济转型升级。\n"
        "\n"
        "(二) 基本原则\n"
    )
    assert _paras(raw) == [
        "全面贯彻落实党的十九大精神，以习近平新时代中国特色社会主义思想为指导，完善公共支撑体系，促进新一代人工智能产业发展，推动制造强国和网络强国建设，助力实体经济转型升级。",
        "(二)基本原则",
    ]


def test_does_not_join_heading_to_body():
    raw = "一、总体要求\n\n（一）指导思想\n\n深入学习贯彻党的十九大精神。\n"
    assert _paras(raw) == ["一、总体要求", "（一）指导思想", "深入学习贯彻党的十九大精神。"]


def test_article_cut_at_page_end_is_joined():
    # compilation, 广州黄埔细则 第二十九条 (page break after 承办人工)
    raw = "第二十九条 对本区企业或机构出资主办、联合主办、承办人工\n\n智能领域高水平、高层次的产业峰会，给予补助。\n"
    assert _paras(raw) == ["第二十九条对本区企业或机构出资主办、联合主办、承办人工智能领域高水平、高层次的产业峰会，给予补助。"]


def test_ratio_cut_by_sentence_splitter_is_joined():
    # zhejiang/zj-502.txt lines 6-7
    raw = "对在我县申报入选的国家、省“千人计划”人才，按照上级补助金额给予1:\n2配套资助；\n"
    assert _paras(raw) == ["对在我县申报入选的国家、省“千人计划”人才，按照上级补助金额给予1:2配套资助；"]


CCID_AD = """人工智能是引领未来的战略性技术，必须给予积极应对。



最专业报告分享群：

- 每日分享科技行业报告
- 同行业匹配，覆盖人工智能、大数据、机器人、智慧医疗、智能家居、物联网等行业。
- 高质量用户，同频的人说同样的话

扫描右侧二维码，
或直接搜索关注公众号：国智清创雄安机器人研究院
回复“**报告**”加入



(xionganir)



一、对2019年形势的基本判断
"""


def test_advertising_block_is_dropped():
    paras = _paras(CCID_AD)
    assert paras == ["人工智能是引领未来的战略性技术，必须给予积极应对。", "一、对2019年形势的基本判断"]


def test_page_numbers_running_titles_and_toc_dropped():
    raw = "\n".join(
        [
            "目录",
            "1. 北京市加快科技创新培育人工智能产业的指导意见.....6",
            "人工智能政策汇编",
            "第一条 支持企业发展。",
            "- 2 -",
            "人工智能政策汇编",
            "第二条 支持平台建设。",
            "第 3 页",
            "人工智能政策汇编",
            "12",
            "第三条 支持人才引进。",
        ]
    )
    assert _paras(raw) == ["第一条支持企业发展。", "第二条支持平台建设。", "第三条支持人才引进。"]


def test_front_matter_becomes_metadata():
    raw = "url: https://example.org/x\ntitle: 某市人工智能若干措施\n\n一、支持企业\n\n对新引进的企业给予奖励。\n"
    doc = document_from_text(raw, "x")[0]
    assert doc.title == "某市人工智能若干措施" and doc.url == "https://example.org/x"
    assert [c.text for c in segment(doc)] == ["对新引进的企业给予奖励。"]
