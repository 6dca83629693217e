"""Evidence per tag (tagger/model/evidence.py): real clauses, the real bundle, real HTTP, real SQLite.

Two methods. The default reads the model's own arithmetic (per-feature logit contributions,
tagger/model/sparse.py + _kernels.c); occlusion (re-scoring without each token) is kept as
the reference. Checked on 200 labeled clauses: spans are the clause's own characters at the
given offsets, runs of model tokens; cutting a label's spans out of the text lowers its
score; the default's top span overlaps occlusion's spans on most labels; the compiled and
numpy paths agree; the contributions add up to the model's logits.
"""

from __future__ import annotations

import json
import random
import sqlite3

import httpx
import numpy as np
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.model.evidence import MAX_SPANS, METHODS, explain, is_trivial_span, map_to_original, remove_spans
from tagger.model.features import model_text
from tagger.model.inference import Tagger
from tagger.model.overrides import NO_OVERRIDES
from tagger.store.db import ClauseQuery, Store
from tagger.tagging import tag_clauses
from tagger.taxonomy import MULTI_HEADS as HEADS  # evidence covers the tag heads, not kind

from ..conftest import DOCS, ROOT, run_cli, serve

N_CLAUSES = 200


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(ROOT / "models" / "policy-tagger")


def _rows() -> list[dict]:
    return [json.loads(line) for line in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """200 labeled clauses spread over the whole file (every document group, both waves)."""
    rows = _rows()
    step = len(rows) // N_CLAUSES
    return [{"id": r["id"], "text": r["text"]} for r in rows[::step][:N_CLAUSES]]


@pytest.fixture(scope="module")
def tagged(tagger, sample) -> list[dict]:
    # Model evidence only: the override rules have their own test (tests/model/test_overrides.py).
    return tag_clauses(tagger, sample, evidence=True, overrides=NO_OVERRIDES)


@pytest.fixture(scope="module")
def tagged_occlusion(tagger, sample) -> list[dict]:
    return tag_clauses(tagger, sample, evidence=True, overrides=NO_OVERRIDES, evidence_method="occlusion")


_TOKENIZER = None


def _token_runs(text: str) -> set[str]:
    """Every run of consecutive model tokens of ``text`` (what a span of the model's
    evidence must be, once normalised): a span at shifted offsets cuts tokens and is not."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = Tagger(ROOT / "models" / "policy-tagger").tokenizer
    toks = _TOKENIZER.tokens(text)
    return {"".join(toks[a:b]) for a in range(len(toks)) for b in range(a + 1, min(len(toks), a + 8) + 1)}


def _spans_ok(rec: dict) -> None:
    ev = rec["evidence"]
    assert set(ev) == set(HEADS)
    runs = _token_runs(rec["text"])
    for h in HEADS:
        assert list(ev[h]) == rec[h], "one entry per assigned label, in the record's label order"
        for lab, spans in ev[h].items():
            assert len(spans) <= MAX_SPANS
            assert [s["weight"] for s in spans] == sorted((s["weight"] for s in spans), reverse=True)
            for s in spans:
                assert set(s) == {"start", "end", "text", "weight"}
                assert 0 <= s["start"] < s["end"] <= len(rec["text"]) and rec["text"][s["start"] : s["end"]] == s["text"]
                assert s["weight"] > 0
                if rec.get("provenance", {}).get(h, {}).get(lab, "model") == "model":
                    assert model_text(s["text"]).replace(" ", "") in runs, (rec["text"], s)


def test_contribution_evidence_on_200_real_clauses(tagger, tagged, tagged_occlusion):
    assigned = [(rec, occ, h, lab) for rec, occ in zip(tagged, tagged_occlusion) for h in HEADS for lab in rec[h]]
    assert len(assigned) > 250  # the sample really exercises the heads
    for rec in tagged:
        _spans_ok(rec)
    with_evidence = [(rec, occ, h, lab) for rec, occ, h, lab in assigned if rec["evidence"][h][lab]]
    assert len(with_evidence) >= 0.98 * len(assigned), f"{len(with_evidence)} of {len(assigned)} labels have evidence"
    spans = [s for rec, _, h, lab in with_evidence for s in rec["evidence"][h][lab]]
    trivial = [s["text"] for s in spans if is_trivial_span(s["text"])]
    assert len(trivial) <= 0.02 * len(spans), trivial  # single characters and function words

    # The reference: the top span shares characters with one of occlusion's spans on most labels.
    both = [(rec, occ, h, lab) for rec, occ, h, lab in with_evidence if occ["evidence"][h][lab]]
    overlap = sum(any(o["start"] < rec["evidence"][h][lab][0]["end"] and rec["evidence"][h][lab][0]["start"] < o["end"]
                      for o in occ["evidence"][h][lab]) for rec, occ, h, lab in both)
    assert overlap >= 0.8 * len(both), f"top span overlaps occlusion's on {overlap} of {len(both)} labels"

    # Faithful: cutting a label's spans out of the text lowers its score (all but a few:
    # a cut can make new n-grams across the gap).
    probes = [{"id": f"p{k}", "text": remove_spans(rec["text"], [(s["start"], s["end"]) for s in rec["evidence"][h][lab]])}
              for k, (rec, _, h, lab) in enumerate(with_evidence)]
    again = tag_clauses(tagger, probes, overrides=NO_OVERRIDES)
    lowered = sum(new["scores"][h][lab] < rec["scores"][h][lab] for (rec, _, h, lab), new in zip(with_evidence, again))
    assert lowered >= 0.97 * len(with_evidence), f"{lowered} of {len(with_evidence)}"


def test_occlusion_evidence_on_200_real_clauses_is_faithful(tagger, tagged_occlusion):
    tagged = tagged_occlusion
    assigned = [(rec, h, lab) for rec in tagged for h in HEADS for lab in rec[h]]
    for rec in tagged:
        _spans_ok(rec)
    with_evidence = [(rec, h, lab) for rec, h, lab in assigned if rec["evidence"][h][lab]]
    # Evidence is dropped only when it fails its own check; that must stay rare.
    assert len(with_evidence) >= 0.9 * len(assigned), f"{len(with_evidence)} of {len(assigned)} labels have evidence"

    # Cut out all spans of a label, and each span alone; tag the rest again, in one batch.
    probes, checks = [], []
    for rec, h, lab in with_evidence:
        spans = rec["evidence"][h][lab]
        probes.append({"id": f"p{len(probes)}", "text": remove_spans(rec["text"], [(s["start"], s["end"]) for s in spans])})
        checks.append((rec, h, lab, None))
        for s in spans:
            probes.append({"id": f"p{len(probes)}", "text": remove_spans(rec["text"], [(s["start"], s["end"])])})
            checks.append((rec, h, lab, s))
    again = tag_clauses(tagger, probes, overrides=NO_OVERRIDES)
    for (rec, h, lab, span), new in zip(checks, again):
        before, after = rec["scores"][h][lab], new["scores"][h][lab]
        if span is None:
            assert after < before, f"{rec['id']} {h}:{lab}: removing its evidence did not lower the score ({before} -> {after})"
        else:
            # weight = the drop when this span alone is removed (4 decimals; scores have 6)
            assert abs((before - after) - span["weight"]) < 2e-4, (rec["id"], h, lab, span, before, after)


def _shuffled(n: int, seed: int = 11) -> list[str]:
    texts = [r["text"] for r in _rows()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def _all_labels(tagger, n: int) -> list[list[tuple[str, int]]]:
    return [[(h, j) for h in HEADS for j in range(len(tagger.manifest.labels(h)))] for _ in range(n)]


def test_contributions_add_up_to_the_models_logits(tagger):
    """Linear: coefficient x value sums to the logit minus the intercept. Trees: the path
    contributions sum to the raw score minus the score of the empty clause. Every label of
    every tag head, 300 real clauses, through the compiled loops and the numpy code."""
    from tagger.model import sparse as sparse_mod

    sp = tagger.sparse
    toks = tagger.tokenizer.batch(_shuffled(300))
    B = len(toks)
    r, c, v, _ = sp._entries(toks)
    row_ptr = np.searchsorted(r, np.arange(B + 1)).astype(np.int64)
    req = [(i, *sp.members(h, j)) for i in range(B) for h, j in _all_labels(tagger, 1)[0]]
    req_row, req_lin, req_slot = (np.array(x, np.int64) for x in zip(*req))
    assert (req_lin >= 0).all() and (req_slot >= 0).all()  # the shipped heads average both members
    counts = row_ptr[req_row + 1] - row_ptr[req_row]
    req_off = (np.cumsum(counts) - counts).astype(np.int64)
    lo, hi, delta, base = sp.trees.path_tables()
    t = sp.trees
    lin_c, tree_c = np.empty(int(counts.sum()), np.float32), np.empty(int(counts.sum()), np.float32)
    sparse_mod._kernels.contrib(row_ptr, c, v, sp.W, t.first, t.thr, t.tree, t.mask, t.start, t.group, lo, hi, delta,
                                req_row, req_lin, req_slot, req_off, lin_c, tree_c)
    lin_n, tree_n = sp._contrib_numpy(r, c, v, B, row_ptr, req_row, req_lin, req_slot, counts, lo, hi, delta)
    assert np.abs(lin_c - lin_n).max() < 1e-6 and np.abs(tree_c - tree_n).max() < 1e-6
    logits = np.empty((B, sp.W.shape[1]), np.float32)
    raw = np.empty((B, t.n_groups), np.float32)
    sparse_mod._kernels.score(r, c, v, sp.W, sp.b, t.first, t.thr, t.tree, t.mask, t.start, t.leaf_values, t.group, logits, raw)
    q_of = np.repeat(np.arange(len(req)), counts)
    z_lin = np.bincount(q_of, weights=lin_c, minlength=len(req)) + sp.b[req_lin]
    z_tree = np.bincount(q_of, weights=tree_c, minlength=len(req)) + base[req_slot]
    assert np.abs(z_lin - logits[req_row, req_lin]).max() < 1e-4
    assert np.abs(z_tree - raw[req_row, req_slot]).max() < 1e-4
    assert (np.abs(tree_c) > 0).mean() > 0.01  # the trees do take part


def test_compiled_and_numpy_evidence_agree(tagger):
    """The same token scores and spans from _kernels.c and from the numpy fallback."""
    texts = _shuffled(300, seed=5)
    toks = tagger.tokenizer.batch(texts)
    wanted = _all_labels(tagger, len(toks))
    sp = tagger.sparse
    assert sp.compiled
    compiled = sp.explain(toks, wanted)
    fallback = Tagger(ROOT / "models" / "policy-tagger", self_test=False)
    fallback.sparse.compiled = False
    numpy_path = fallback.sparse.explain(toks, wanted)
    for a, b in zip(compiled, numpy_path):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5
    clauses = [{"id": str(i), "text": t} for i, t in enumerate(texts[:100])]
    ours = tag_clauses(tagger, clauses, evidence=True, overrides=NO_OVERRIDES)
    theirs = tag_clauses(fallback, clauses, evidence=True, overrides=NO_OVERRIDES)
    assert [[(s["start"], s["end"]) for h in HEADS for sp_ in r["evidence"][h].values() for s in sp_] for r in ours] == \
        [[(s["start"], s["end"]) for h in HEADS for sp_ in r["evidence"][h].values() for s in sp_] for r in theirs]


@pytest.mark.parametrize("compiled", [True, False])
def test_marker_characters_get_no_span(tagger, compiled):
    """Marker tokens (Private Use Area characters the tokeniser may add; not in the text):
    an occurrence containing one gives no token any share, and spans still index the text."""
    if not compiled:
        tagger = Tagger(ROOT / "models" / "policy-tagger", self_test=False)
        tagger.sparse.compiled = False
    sp = tagger.sparse
    # One feature with two occurrences, one of them across a marker: only the other counts,
    # with its half of the contribution.
    texts = ["支持 \ue001 芯片 研发"]
    occ = (np.array([0, 0]), np.array([7, 7]), np.array([3, 5]), np.array([7, 7]))
    [scores] = sp._to_tokens(texts, [[("industry", 0)]], np.array([0]), np.array([7]), np.array([0, 1]), occ,
                             np.array([0]), np.array([0]), np.array([2.0]))
    assert scores.shape == (1, 4)
    assert scores[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    # End to end: markers in the token strings the model reads, none in the text.
    text = "对人工智能企业给予最高500万元资金补助，支持芯片研发。"
    plain = tagger.tokenizer(text)
    marked = "\ue000 " + plain.replace(" 芯片", " \ue002 芯片") + " \ue0ff"
    [p] = tagger.predict_tokens([marked])
    wanted = [{h: p.labels[h] for h in HEADS}]
    assert any(wanted[0].values())
    [ev] = explain(tagger, [text], wanted, token_texts=[marked])
    spans = [s for h in HEADS for lab in wanted[0][h] for s in ev[h][lab]]
    assert spans and all(text[s["start"] : s["end"]] == s["text"] and not any("\ue000" <= ch <= "\ue0ff" for ch in s["text"]) for s in spans)


def test_offsets_point_into_the_original_text_through_normalisation(tagger):
    # Full-width digits, an ideographic space, spaces next to Chinese and a zero-width space:
    # the model reads another string, the spans must still index the text as given.
    text = "对新引进的人工智能企业，\u3000按实际租金的５０％给予 三年 房租\u200b补贴，支持 CPU 芯片研发。"
    norm, pos = map_to_original(text)
    assert norm != text and pos is not None and len(norm) < len(text)
    assert all(text[p] == norm[j] or (text[p], norm[j]) in (("\uff10", "0"), ("\uff15", "5"), ("\uff05", "%")) for j, p in enumerate(pos))
    [rec] = tag_clauses(tagger, [{"id": "x", "text": text}], evidence=True, overrides=NO_OVERRIDES)
    assert "rent_subsidy" in rec["measure"] and rec["evidence"]["measure"]["rent_subsidy"]
    _spans_ok(rec)
    texts = [s["text"] for h in HEADS for spans in rec["evidence"][h].values() for s in spans]
    assert any(t in ("租金", "房租", "补贴", "房租\u200b补贴") or "租" in t for t in texts), texts


def test_no_evidence_unless_asked_and_unassigned_labels_get_none(tagger):
    recs = tag_clauses(tagger, [{"id": "a", "text": "人工智能是引领未来的战略性技术。"}, {"id": "b", "text": "对人工智能企业给予最高500万元资金补助。"}])
    assert all("evidence" not in r for r in recs)
    a, b = tag_clauses(tagger, [{"id": "a", "text": "人工智能是引领未来的战略性技术。"}, {"id": "b", "text": "对人工智能企业给予最高500万元资金补助。"}], evidence=True)
    assert all(list(r["evidence"][h]) == r[h] for r in (a, b) for h in HEADS)  # assigned labels only
    assert "grant" in b["measure"] and b["evidence"]["measure"]["grant"]


def test_cli_tag_evidence_flag(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。"}\n', encoding="utf-8")
    plain = run_cli("tag", str(src), "-q")
    assert plain.returncode == 0, plain.stderr
    rec = json.loads(plain.stdout)
    assert "evidence" not in rec and rec["provenance"]["measure"]["rent_subsidy"] == "model"
    out = tmp_path / "out.jsonl"
    r = run_cli("tag", str(src), "--evidence", "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text(encoding="utf-8"))
    spans = rec["evidence"]["measure"]["rent_subsidy"]
    assert spans and all(rec["text"][s["start"] : s["end"]] == s["text"] for s in spans)
    # The CLI's spans are the library's (one function behind CLI, API, store and page).
    [lib] = tag_clauses(Tagger(ROOT / "models" / "policy-tagger"), [{"id": "a", "text": rec["text"]}], evidence=True)
    assert rec["evidence"] == lib["evidence"]
    occ = run_cli("tag", str(src), "--evidence", "--evidence-method", "occlusion", "-q")
    assert occ.returncode == 0, occ.stderr
    occ_rec = json.loads(occ.stdout)
    assert occ_rec["evidence"]["measure"]["rent_subsidy"] and occ_rec["evidence"] != rec["evidence"]
    bad = run_cli("tag", str(src), "--evidence", "--evidence-method", "saliency", "-q")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    alone = run_cli("tag", str(src), "--evidence-method", "occlusion", "-q")
    assert alone.returncode == 2 and alone.stderr.strip().endswith("--evidence-method needs --evidence (without it no evidence is computed)")
    # Resuming that output without --evidence would mix records with and without it.
    r = run_cli("tag", str(src), "-o", str(out), "-q")
    assert r.returncode == 2 and "was tagged with --evidence" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def api(tmp_path_factory, tagger):
    db = tmp_path_factory.mktemp("db") / "evidence.db"
    # One worker process: requests with evidence take the worker path, evidence=false the thread path.
    settings = Settings(database_url=f"sqlite:///{db}", work_processes=1, allow_anonymous_writes=True)
    yield from serve(create_app(settings, tagger=tagger))


def test_api_tag_returns_evidence_by_default(api, tagger):
    body = {"clauses": [{"id": "a", "text": "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。"}, {"id": "b", "text": "支持智能网联汽车测试。"}]}
    j = httpx.post(api + "/v1/tag", json=body, timeout=60).json()
    a, b = j["data"]
    assert a["evidence"]["measure"]["rent_subsidy"] and b["evidence"]["industry"]["vehicles"]
    assert a["provenance"]["measure"]["rent_subsidy"] == "model" and a["model"] == j["model"]
    for rec in (a, b):
        _spans_ok(rec)
    # The API's spans are the library's, whichever method is asked for.
    lib = tag_clauses(tagger, body["clauses"], evidence=True)
    assert [r["evidence"] for r in j["data"]] == [r["evidence"] for r in lib]
    occ = httpx.post(api + "/v1/tag?evidence_method=occlusion", json=body, timeout=60).json()
    lib_occ = tag_clauses(tagger, body["clauses"], evidence=True, evidence_method="occlusion")
    assert [r["evidence"] for r in occ["data"]] == [r["evidence"] for r in lib_occ] != [r["evidence"] for r in lib]
    wrong = httpx.post(api + "/v1/tag?evidence_method=saliency", json=body, timeout=60)
    assert wrong.status_code == 422 and "evidence_method" in wrong.text
    off = httpx.post(api + "/v1/tag?evidence=false", json=body, timeout=60).json()
    assert all("evidence" not in r for r in off["data"]) and off["data"][0]["measure"] == a["measure"]
    bad = httpx.post(api + "/v1/tag?evidence=maybe", json=body, timeout=60)
    assert bad.status_code == 422 and "evidence" in bad.json()["message"]


def test_api_documents_store_and_clauses_keep_evidence(api):
    text = "关于支持人工智能产业发展的若干措施\n\n一、对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。\n二、支持建设智能算力中心。\n"
    r = httpx.post(api + "/v1/documents?store=true", json={"text": text, "doc": "ev-doc"}, headers={"Origin": api}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data and all("evidence" in d and "provenance" in d for d in data)
    assert any(d["evidence"]["measure"].get("rent_subsidy") for d in data)
    plain = httpx.post(api + "/v1/documents?evidence=false", json={"text": text, "doc": "ev-doc2"}, timeout=60).json()
    assert plain["data"] and all("evidence" not in d for d in plain["data"])
    rows = httpx.get(api + "/v1/clauses", params={"doc": "ev-doc", "sort": "position", "order": "asc"}, timeout=60).json()["data"]
    assert [row["evidence"] for row in rows] == [d["evidence"] for d in data]
    assert [row["provenance"] for row in rows] == [d["provenance"] for d in data]


def test_cli_ingest_stores_evidence_and_an_old_database_gets_the_columns(tmp_path):
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    Store(url)
    with sqlite3.connect(db) as c:  # a store written before this change: no evidence, no provenance
        c.execute("ALTER TABLE clauses DROP COLUMN evidence")
        c.execute("ALTER TABLE clauses DROP COLUMN provenance")
    doc = DOCS / "extra" / "x001.txt"
    r = run_cli("ingest", str(doc), "--database-url", url)
    assert r.returncode == 0 and "inserted 1" in r.stderr, r.stderr
    rows, total, _ = Store(url).query(ClauseQuery(limit=1000))
    labeled = [row for row in rows if any(row[h] for h in HEADS)]
    assert total == len(rows) > 5 and labeled
    for row in labeled:
        assert row["provenance"] and {h: list(row["provenance"][h]) for h in HEADS} == {h: row[h] for h in HEADS}
        _spans_ok(row)
    # Stored without evidence, then ingested with it: the evidence is filled in.
    url2 = f"sqlite:///{tmp_path / 'b.db'}"
    assert run_cli("ingest", str(doc), "--database-url", url2, "--no-evidence").returncode == 0
    assert all(row["evidence"] is None for row in Store(url2).query(ClauseQuery(limit=1000))[0])
    r = run_cli("ingest", str(doc), "--database-url", url2)
    assert r.returncode == 0 and "retagged 1" in r.stderr, r.stderr
    assert all(row["evidence"] is not None for row in Store(url2).query(ClauseQuery(limit=1000))[0])
    r = run_cli("ingest", str(doc), "--database-url", url2)
    assert "unchanged 1" in r.stderr
    r = run_cli("ingest", str(doc), "--database-url", url2, "--no-evidence", "--evidence-method", "occlusion")
    assert r.returncode == 2 and "contradict" in r.stderr


def test_cli_lists_the_evidence_methods():
    from tagger.cli.commands import EVIDENCE_METHODS

    assert EVIDENCE_METHODS == METHODS and METHODS[0] == "contributions"


def test_graph_serving_gets_the_same_evidence_and_a_bundle_without_tables_gets_occlusion(tagger, tmp_path):
    """TAGGER_SERVING=onnx scores with the graph; evidence still reads the bundle's sparse
    tables (the same spans). A bundle without them can only be explained by occlusion."""
    import shutil

    clauses = [{"id": "a", "text": "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。"},
               {"id": "b", "text": "支持智能网联汽车测试，对首台套芯片产品给予最高500万元奖励。"}]
    graph = Tagger(ROOT / "models" / "policy-tagger", serving="onnx")
    assert graph.sparse is None
    ours = tag_clauses(tagger, clauses, evidence=True, overrides=NO_OVERRIDES)
    assert [r["evidence"] for r in tag_clauses(graph, clauses, evidence=True, overrides=NO_OVERRIDES)] == [r["evidence"] for r in ours]

    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "models" / "policy-tagger", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    del manifest["serving"]
    (bundle / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    (bundle / "sparse.npz").unlink()
    old = Tagger(bundle)
    assert old.serving == "onnx"
    occ = tag_clauses(tagger, clauses, evidence=True, overrides=NO_OVERRIDES, evidence_method="occlusion")
    got = tag_clauses(old, clauses, evidence=True, overrides=NO_OVERRIDES)

    def where(recs):  # the graph's probabilities differ from the tables' in the 6th decimal: compare spans, not weights
        return [{h: {lab: [(s["start"], s["end"]) for s in sp] for lab, sp in r["evidence"][h].items()} for h in HEADS} for r in recs]

    assert where(got) == where(occ) and any(sp for r in got for h in HEADS for sp in r["evidence"][h].values())
    with pytest.raises(ValueError, match="unknown evidence method 'saliency'"):
        tag_clauses(tagger, clauses, evidence=True, evidence_method="saliency")


def test_spans_are_phrases_of_the_tokens_that_carry_the_label():
    """Span building on given per-token contributions (no model): a seed grows into the
    neighbours with >= 40% of its share, across numbers and 的/和 only towards such a word,
    never starting or ending on a function word, a number or punctuation; boilerplate (给予,
    支持) joins only a measure's phrase; phrases are ranked by summed contribution."""
    from tagger.model.evidence import _clause_spans

    def spans(tokens, scores, head="topic"):
        text = "".join(tokens)
        [got] = _clause_spans(text, " ".join(tokens), np.array([scores], dtype=float), MAX_SPANS, [head])
        return [(s["text"], s["weight"]) for s in got]

    # 绿色 (50% of 发行) joins; 债券 (negative) does not, so 的 bridges nothing here.
    assert spans(["对", "发行", "绿色", "债券", "的", "企业"], [0.4, 1.4, 0.7, -0.1, 0.4, 1.6]) == [("发行绿色", 2.1), ("企业", 1.6)]
    # 和 bridges two words that carry the label; a phrase does not start on 对 nor cross "，".
    assert spans(["对", "增值税", "和", "企业所得税", "，", "给予", "奖励"], [0.5, 1.0, 0.1, 2.0, 0.3, 0.9, 0.2])[0] == ("增值税和企业所得税", 3.1)
    # Summed contribution ranks: a phrase of two good tokens beats one slightly better token.
    assert [t for t, _ in spans(["公共", "服务", "平台", "、", "算力"], [0.8, 0.5, 1.0, 0.0, 1.5])] == ["公共服务平台", "算力"]
    # A weak neighbour (< 40% of the seed) stays out.
    assert spans(["运行", "补助"], [0.1, 1.0]) == [("补助", 1.0)]
    # A number is crossed towards a word that carries the label, unless it takes more than it adds.
    assert spans(["奖励", "10", "万元"], [1.0, 0.1, 0.9])[0] == ("奖励10万元", 2.0)
    assert spans(["奖励", "10", "万元"], [1.0, -1.2, 0.9]) == [("奖励", 1.0), ("万元", 0.9)]
    # For a measure the giving verb joins the amount (给予 is never a seed itself); 每家, too
    # weak for 亿元's phrase, is a seed of its own, and phrases that touch are joined.
    tokens, scores = ["每家", "最高", "给予", "1", "亿元", "的", "支持", "。"], [0.3, 0.6, 1.9, 0.2, 0.8, 0.05, 0.9, 0.2]
    assert spans(tokens, scores, "measure")[0] == ("每家最高给予1亿元的支持", 4.75)
    # For a topic 给予/支持 say nothing of the subject: they stay out.
    assert all("给予" not in t and "支持" not in t for t, _ in spans(tokens, scores, "topic"))


@pytest.mark.parametrize("compiled", [True, False])
def test_evidence_from_the_features_scoring_kept_equals_extracting_again(tagger, compiled):
    """Tagging hands evidence the features its scoring pass extracted (chunk by chunk, every
    clause, labelled or not): the token scores and the records are those of a fresh extraction."""
    t = tagger
    if not compiled:
        t = Tagger(ROOT / "models" / "policy-tagger", self_test=False)
        t.sparse.compiled = False
    texts = _shuffled(600, seed=3)  # three chunks of SparseModel.CHUNK, the last one short
    toks = t.tokenizer.batch(texts)
    keep = {"entries": None}
    t.probabilities_tokens(toks, keep)
    assert len(keep["entries"]) == 3 and len(keep["words"]) == 3
    wanted = _all_labels(t, len(toks))
    wanted = [w if i % 3 else [] for i, w in enumerate(wanted)]  # some clauses ask for nothing
    again = t.sparse.explain(toks, wanted)
    reused = t.sparse.explain(toks, wanted, entries=keep["entries"])
    for a, b in zip(again, reused):
        assert (a is None and b is None) or (a.shape == b.shape and np.array_equal(a, b))
    clauses = [{"id": str(i), "text": x} for i, x in enumerate(texts)]
    ours = tag_clauses(t, clauses, evidence=True, overrides=NO_OVERRIDES)
    model_labels = [{h: r[h] for h in HEADS} for r in ours]
    assert [r["evidence"] for r in ours] == [{h: e[h] for h in HEADS} for e in explain(t, texts, model_labels)]
    assert any(r["evidence"][h] for r in ours for h in HEADS)
