"""The pilot-zone compilation splits into its 33 listed policies."""

import pytest

from tagger.ingest.compilation import split_compilation
from tagger.ingest.documents import load_documents
from tagger.ingest.textnorm import normalize_text

from ..conftest import COMPILATION


@pytest.fixture(scope="module")
def parts():
    return load_documents(COMPILATION)


def test_yields_33_documents_with_toc_titles(parts):
    assert len(parts) == 33
    titles = [d.title for d in parts]
    assert titles[0] == "北京市加快科技创新培育人工智能产业的指导意见"
    assert titles[12] == "成都市加快人工智能产业发展专项政策"
    assert titles[13] == "成都市加快人工智能产业发展专项政策实施细则"
    assert titles[22] == "武汉国家新一代人工智能创新发展试验区建设若干政策"
    assert titles[32] == "沈阳市新一代人工智能发展规划(2018-2030年)"
    assert len(set(titles)) == 33


def test_each_part_has_region_and_body(parts):
    regions = {d.id[-2:]: d.region for d in parts}
    assert regions["13"] == "四川省成都市" and regions["23"] == "湖北省武汉市"  # from SOURCES.tsv
    for d in parts:
        assert len(d.text) > 500, d.id
        assert d.meta["compilation"] == "ai-pilot-zones-policy-compilation-2022"


def test_front_matter_and_toc_are_not_in_any_part(parts):
    text = "\n".join(d.text for d in parts)
    assert "编写说明" not in text
    assert "斯百德产业政策研究院" not in text
    assert ".....6" not in text and "目录" not in text.split("\n")


def test_titles_split_over_two_lines_are_found():
    lines = normalize_text(
        "目录\n一、重庆国家新一代人工智能创新发展试验区\n1. 甲市政策.....1\n2. 重庆市建设国家新一代人工智能创新发展试验区实施方案.....2\n"
        "甲市政策\n第一条 支持。\n重庆市建设国家新一代人工智能创新发展试验区\n\n实施方案\n第一条 发展。\n"
    ).split("\n")
    parts = split_compilation(lines)
    assert [p.title for p in parts] == ["甲市政策", "重庆市建设国家新一代人工智能创新发展试验区实施方案"]
    assert [l for l in parts[1].lines if l] == ["第一条发展。"]
    assert parts[1].region_hint == "重庆"


def test_plain_document_is_not_a_compilation():
    assert split_compilation(["一、总体要求", "目录管理办法。"]) is None
