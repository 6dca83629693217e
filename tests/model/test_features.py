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
