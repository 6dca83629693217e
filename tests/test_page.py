"""The analysts' page end to end in headless Chromium (Debian's, driven by Playwright):
open, filter, see the table change, download a CSV."""

import io
import os
import shutil

import pandas as pd
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.ingest import load_documents
from tagger.model import Tagger
from tagger.store import Store, ingest_documents

from .conftest import COMPILATION, ROOT, serve

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("TAGGER_TEST_CHROMIUM") or shutil.which("chromium") or ""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/services.sh installs it)")
        pytest.skip("no chromium on this machine")
    db = f"sqlite:///{tmp_path_factory.mktemp('db') / 'page.db'}"
    tagger = Tagger(ROOT / "models" / "policy-tagger")
    ingest_documents(Store(db), tagger, load_documents(COMPILATION))
    # Writes without a key: allowed only because this test server binds to loopback.
    yield from serve(create_app(Settings(database_url=db, allow_anonymous_writes=True), tagger=tagger))


def test_filter_and_download_csv(base_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(accept_downloads=True)
        page.goto(base_url + "/")
        page.wait_for_selector("#results tbody tr")
        before = int(page.inner_text("#count"))
        assert page.inner_text("#model-version") not in ("", "…", "unknown")

        page.select_option("#f-measure", ["rent_subsidy"])
        page.fill("#f-region", "成都,武汉")
        page.click("#apply")
        page.wait_for_function(f"document.getElementById('count').textContent !== '{before}'")
        after = int(page.inner_text("#count"))
        assert 0 < after < before
        rows = page.query_selector_all("#results tbody tr")
        assert len(rows) == min(after, 50)
        chips = page.inner_text("#results tbody")
        assert "租金/场地补贴" in chips  # tags shown as chips with Chinese names

        with page.expect_download() as dl:
            page.click("#export-csv")
        path = tmp_path / "clauses.csv"
        dl.value.save_as(path)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    df = pd.read_csv(io.BytesIO(path.read_bytes()), encoding="utf-8-sig")
    assert len(df) == after
    assert all("rent_subsidy" in m for m in df["measure"])
