"""The tokeniser's own loop over jieba_next's internals (Tokenizer._cut) against
jieba_next's public lcut and against jieba, on edge cases (the corpus-wide parity with
jieba is tests/training/test_parity.py)."""

import pytest

from tagger.model.features import DEFAULT_USERDICT, Tokenizer

CASES = [
    "", "   ", "对", "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。",
    "AI--大模型 -- 算力券", "GPU-集群 3.5亿元，Hello world", "ａｂｃ １２３", "🙂 芯片 🙂", "\t\n研发补助\n",
    "x\x01y", "具身智能机器人和低空经济eVTOL飞行器", "对" * 500, "2023年12月31日前",
]


@pytest.fixture(scope="module")
def tokenizers():
    pytest.importorskip("jieba_next")
    fast = Tokenizer(DEFAULT_USERDICT, engine="jieba_next")
    public = Tokenizer(DEFAULT_USERDICT, engine="jieba_next")
    public._fast = False
    return fast, public, Tokenizer(DEFAULT_USERDICT, engine="jieba")


def test_fast_loop_is_used():
    pytest.importorskip("jieba_next")
    assert Tokenizer(DEFAULT_USERDICT, engine="jieba_next")._fast


@pytest.mark.parametrize("text", CASES)
def test_fast_loop_equals_jieba_next_and_jieba(tokenizers, text):
    fast, public, jieba = tokenizers
    assert fast(text) == public(text) == jieba(text)


def test_known_jieba_next_difference_is_jieba_nexts_own(tokenizers):
    """A run of characters absent from the HMM's tables: jieba_next keeps it as one token,
    jieba cuts it per character. No such run occurs in the corpus (the parity test); the
    fast loop follows jieba_next's own path here, it does not add a difference."""
    fast, public, jieba = tokenizers
    text = "龘靐齉爩麤"
    assert fast(text) == public(text) == text
    assert jieba(text) == " ".join(text)


def test_without_the_rust_table_it_falls_back_to_lcut(tokenizers, monkeypatch):
    fast, public, _ = tokenizers
    monkeypatch.setattr(fast._tok, "_rust_prefix", None)
    monkeypatch.setattr(fast._tok, "_ensure_rust_prefix", lambda: None)
    text = "对新引进的人工智能企业给予房租补贴"
    assert fast(text) == public(text) != ""


# -- structure markers ---------------------------------------------------------------------

from tagger.model.features import START_MARKER, is_marker  # noqa: E402


@pytest.fixture(scope="module")
def marked():
    return Tokenizer(DEFAULT_USERDICT, engine="jieba", structure=True)


@pytest.mark.parametrize(
    "text, length, end, before_start",
    [
        ("（一）对新落户企业给予奖励。", "\ue002", "\ue011", ["（", "一", "）"]),
        ("第三条 本办法适用于本市。", "\ue002", "\ue011", ["第三条"]),
        ("1.发放算力券；", "\ue001", "\ue012", ["1", "."]),
        ("联系电话：0571-1234", "\ue002", "\ue016", []),
        ("到2025年，规模突破1000亿元", "\ue003", "\ue017", []),
        ("各区人民政府：", "\ue001", "\ue013", []),
        ("对" * 200, "\ue006", "\ue017", []),
    ],
)
def test_markers_describe_the_shape(marked, text, length, end, before_start):
    toks = marked.tokens(text)
    assert toks[:2] == [length, end]
    k = toks.index(START_MARKER)
    assert toks[2:k] == before_start
    # the words themselves are the unmarked tokenizer's, in order
    plain = Tokenizer(DEFAULT_USERDICT, engine="jieba").tokens(text)
    assert [t for t in toks if not is_marker(t)] == plain


def test_markers_are_not_words_and_text_cannot_fake_them(marked):
    toks = marked.tokens("\ue011对企业\ue020给予奖励")
    assert sum(map(is_marker, toks)) == 3  # length, end, start: the text's own PUA characters are gone
    assert not any(ch.isalnum() for t in toks if is_marker(t) for ch in t)


def test_unmarked_bundle_tokenizer_has_no_markers():
    assert not any(map(is_marker, Tokenizer(DEFAULT_USERDICT, engine="jieba").tokens("（一）对新落户企业给予奖励。")))
