"""Real HTTP against the running FastAPI app (uvicorn on a loopback port) with the committed bundle."""

import httpx
import pytest

from tagger.api import create_app
from tagger.config import Settings

from ..conftest import DOCS, serve


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tagger):
    settings = Settings(
        max_clauses_per_request=50,
        max_text_chars=20000,
        max_upload_bytes=200_000,
        database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.db'}",
    )
    yield from serve(create_app(settings, tagger=tagger))


def test_health_ready_model(base_url):
    assert httpx.get(base_url + "/v1/health").json() == {"status": "ok"}
    ready = httpx.get(base_url + "/v1/ready").json()
    assert ready["status"] == "ready"
    # The compiled loops are built wherever the install found a C compiler (CI included).
    assert ready["engine"] == "sparse-compiled"
    model = httpx.get(base_url + "/v1/model").json()
    assert model["version"] == ready["model"] and set(model["heads"]) == {"topic", "measure", "industry", "kind"}


def test_tag_clauses_contract(base_url):
    body = {"clauses": [{"id": "a", "text": "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。", "city": "成都"}, {"id": "b", "text": "支持智能网联汽车测试。"}]}
    r = httpx.post(base_url + "/v1/tag", json=body)
    assert r.status_code == 200
    j = r.json()
    assert j["count"] == 2 and [d["id"] for d in j["data"]] == ["a", "b"]
    d = j["data"][0]
    assert list(d)[:10] == ["id", "doc", "section", "text", "topic", "measure", "industry", "kind", "scores", "model"]
    assert isinstance(d["kind"], str) and d["kind"] in d["scores"]["kind"]
    assert d["city"] == "成都" and d["model"] == j["model"]
    assert "rent_subsidy" in d["measure"]


def test_tag_single_text(base_url):
    j = httpx.post(base_url + "/v1/tag", json={"text": "支持工业机器人产业发展。"}).json()
    assert j["count"] == 1 and j["data"][0]["id"].startswith("text-")


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"clauses": [{"id": "a"}]}, 422, "clauses.0.text"),
        ({"clauses": [{"text": "x"}]}, 422, "clauses.0.id"),
        ({"clauses": "nope"}, 422, "clauses"),
        ({}, 422, "exactly one of"),
        ({"clauses": [{"id": str(i), "text": "支持。"} for i in range(51)]}, 413, "limit is 50"),
        ({"text": "长" * 20001}, 413, "limit is 20000"),
    ],
)
def test_bad_input_is_4xx_with_message(base_url, body, status, needle):
    r = httpx.post(base_url + "/v1/tag", json=body)
    assert r.status_code == status
    assert needle in r.text


def test_malformed_json_is_422(base_url):
    r = httpx.post(base_url + "/v1/tag", content=b'{"clauses": [', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "message" in r.json()


def test_documents_multipart_and_json(base_url):
    path = DOCS / "extra" / "x001.txt"
    r = httpx.post(base_url + "/v1/documents", files={"file": (path.name, path.read_bytes(), "text/plain")})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["count"] > 3 and j["data"][0]["doc"] == "x001"
    r = httpx.post(base_url + "/v1/documents", json={"text": "一、支持企业\n第一条 对新引进企业给予最高500万元奖励。", "doc": "t1"})
    assert r.status_code == 200 and r.json()["data"][0]["doc"] == "t1"
    assert httpx.post(base_url + "/v1/documents", files={"file": ("a.exe", b"MZ", "application/octet-stream")}).status_code == 422
    assert httpx.post(base_url + "/v1/documents", files={"file": ("a.docx", b"junk", "application/octet-stream")}).status_code == 422
    assert httpx.post(base_url + "/v1/documents", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    big = httpx.post(base_url + "/v1/documents", files={"file": ("big.txt", "长".encode() * 100_000, "text/plain")})
    assert big.status_code == 413


def test_metrics_count_requests_and_clauses(base_url):
    httpx.post(base_url + "/v1/tag", json={"text": "支持。"})
    text = httpx.get(base_url + "/metrics").text
    assert 'tagger_requests_total{method="POST",route="/v1/tag",status="200"}' in text
    assert "tagger_request_latency_seconds_bucket" in text
    line = next(l for l in text.splitlines() if l.startswith("tagger_clauses_tagged_total "))
    assert float(line.split()[1]) >= 1
