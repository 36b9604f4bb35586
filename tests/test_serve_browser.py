"""The search page in a real browser: headless Chromium (the system's, driven by Playwright) against
``care-edge serve`` on the shipped collections. Chinese and English queries, switching collection and mode, the ICD
view and its parent link, the keyboard alone, a narrow window, and no request leaving 127.0.0.1.

Needs ``/usr/bin/chromium`` (Debian: ``apt-get install -y chromium``; ``$CARE_EDGE_CHROMIUM`` names another) and the
``browser`` extra (Playwright's Python package; its own browser downloads are never used). Without them the tests
skip with one line (under ``CI=true``, as in CI, a skip is a failure). ``CARE_EDGE_SCREENSHOTS=DIR`` keeps
the screenshots of the main states there (the README's images come from ``make test-browser``);
``CARE_EDGE_SERVE_COMMAND=dist/care-edge`` runs the same tests against the binary.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit

import pytest
from serve_support import serve_process

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"
CHROMIUM = Path(os.environ.get("CARE_EDGE_CHROMIUM", "/usr/bin/chromium"))
# Chromium's own background traffic (updates, sync, field trials) is switched off, so the only requests left are the
# page's; a fresh profile per run keeps earlier state out.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-features=Translate,OptimizationHints,MediaRouter"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _unavailable(reason: str) -> None:
    pytest.skip(f"browser tests skipped: {reason}")  # a failure under CI=true (tests/conftest.py)


@pytest.fixture(autouse=True)
def _no_network() -> None:
    """Overrides conftest's guard: Playwright talks to its driver over a pipe and the page to 127.0.0.1; what the
    page requests is checked by the route below instead."""


NOTES_TEXT = ("Chest pain when breathing in: pleuritic pain, worse on a deep breath.\n"
              "Ask about fever, cough and recent travel. 胸痛伴呼吸困难时先排除肺栓塞。\n")


def _index_folder(root: Path) -> Path:
    """The shipped collections (linked, not copied) plus a user's own collection as `care-edge index` writes one:
    passages of a local text file, meta.file its absolute path, with page, headings and span. Its vectors come
    from the shipped query encoder, which is aligned to the collections' document encoder."""
    from edge import QueryEncoder
    from edge.writers import write_collection

    folder = root / "prebuilt_index"
    folder.mkdir()
    for entry in PREBUILT.iterdir():
        if entry.name != "reports":
            (folder / entry.name).symlink_to(entry)
    notes = root / "documents" / "ward-notes.txt"
    notes.parent.mkdir()
    notes.write_text(NOTES_TEXT, encoding="utf-8")
    passages = [line for line in NOTES_TEXT.splitlines() if line]
    encoder = QueryEncoder(PREBUILT / "query_encoder")
    spans, start = [], 0
    for passage in passages:
        spans.append([start, start + len(passage)])
        start += len(passage) + 1
    write_collection(
        folder / "my-notes", name="my-notes", description="a local folder", document_encoder=encoder.alignment,
        vectors=encoder.encode(passages).vectors, ids=[f"{notes}#{i}" for i in range(len(passages))],
        texts=passages, metas=[{"file": str(notes), "page": 1, "headings": ["Ward notes", "Chest pain"],
                                "span": span} for span in spans],
        index_params={"dtype": "f32"}, licenses=[], created={"tool": "tests.test_serve_browser"})
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (PREBUILT / "default.json").is_file():
        _unavailable("no shipped collections (prebuilt_index/default.json)")
    root = tmp_path_factory.mktemp("served")
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CARE_EDGE_INDEX_DIR": str(_index_folder(root)),
                   "HOME": str(root)}
    command = shlex.split(os.environ.get("CARE_EDGE_SERVE_COMMAND", "")) or [sys.executable, "-m", "edge"]
    with serve_process(command, env=environment, what="care-edge serve", cwd=REPO_ROOT) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM} (install it: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[browser]')")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800}, locale="en-US")
        yield context
        context.close()


@pytest.fixture()
def page(browser: Any, served: str) -> Iterator[Any]:
    """A fresh tab; every request it makes is recorded, and any not to the server is aborted and fails the test."""
    own = urlsplit(served).netloc
    elsewhere: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if urlsplit(url).scheme == "data" or urlsplit(url).netloc == own:
            request_route.continue_()
        else:
            elsewhere.append(url)
            request_route.abort()

    browser.route("**/*", route)
    tab = browser.new_page()
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    tab.close()
    browser.unroute("**/*", route)
    assert not elsewhere, f"the page tried to reach beyond 127.0.0.1: {elsewhere}"
    assert all(url.startswith(served) or url.startswith("data:") for url in requested), requested
    assert not errors, errors


def _screenshot(tab: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("CARE_EDGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(folder / f"{name}.png"))


def _api(served: str, **params: Any) -> Any:
    with urllib.request.urlopen(f"{served}api/search?{urlencode(params)}", timeout=60) as reply:
        return json.loads(reply.read())


def _result_ids(tab: Any) -> list[str]:
    return tab.eval_on_selector_all("#results > li", "items => items.map(item => item.dataset.id)")


def _wait_for_results(tab: Any, query: str) -> None:
    tab.wait_for_function("q => document.querySelector('#status').textContent.includes(q)", arg=query)


def test_chinese_query_searches_as_you_type(page: Any, served: str, tmp_path: Path) -> None:
    page.goto(served)
    page.wait_for_selector("#index option[value='cmed-zh']", state="attached")
    query = "胸痛 呼吸困难"
    page.locator("#q").press_sequentially(query, delay=30)  # no Enter: the debounce searches
    _wait_for_results(page, query)
    expected = _api(served, q=query, index="cmed-zh", mode="hybrid", k=10)
    assert _result_ids(page) == [result["id"] for result in expected["results"]]
    assert "呼吸困难" in page.locator("#results > li").first.inner_text()
    marked = page.eval_on_selector_all("#results mark", "marks => marks.map(mark => mark.textContent)")
    assert "呼吸" in marked and "困难" in marked
    footer = page.locator("#timings").inner_text()
    assert re.fullmatch(r"tokenize [\d.]+ ms \| encode [\d.]+ ms \| search [\d.]+ ms \| lexical [\d.]+ ms \| "
                        r"fetch [\d.]+ ms \| total [\d.]+ ms", footer), footer
    assert page.locator("#mode input[value='hybrid']").is_checked()
    _screenshot(page, "serve-zh", tmp_path)


def test_english_query_on_icd_then_switch_mode(page: Any, served: str, tmp_path: Path) -> None:
    page.goto(served)
    page.wait_for_selector("#index option[value='icd10']", state="attached")
    page.select_option("#index", "icd10")
    assert page.locator("#mode input[value='hybrid']").is_checked()  # icd10's default_mode
    query = "chest pain when breathing"
    page.fill("#q", query)
    page.press("#q", "Enter")
    _wait_for_results(page, query)
    first = page.locator("#results > li").first
    assert first.locator("a.code").inner_text() == "R07.1"
    # Every language the collection's meta holds, each marked with its language.
    languages = first.locator("dd[lang]").evaluate_all("items => items.map(item => item.lang)")
    assert set(languages) >= {"en", "zh", "de", "fr", "es", "pt"}
    assert first.locator("dd[lang='zh']").inner_text() == "呼吸时胸痛"
    assert "Chapter XVIII" in first.inner_text()
    assert "chest" in [text.lower() for text in page.eval_on_selector_all(
        "#results mark", "marks => marks.map(mark => mark.textContent)")]
    _screenshot(page, "serve-icd-results", tmp_path)

    assert "lexical" in page.locator("#timings").inner_text()

    page.check("#mode input[value='dense']")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('dense')")
    expected = _api(served, q=query, index="icd10", mode="dense", k=10)
    assert _result_ids(page) == [result["id"] for result in expected["results"]]
    assert "lexical" not in page.locator("#timings").inner_text()


def test_icd_code_view_walks_to_the_parent(page: Any, served: str, tmp_path: Path) -> None:
    page.goto(served + "#" + urlencode({"index": "icd10", "mode": "dense", "q": "chest pain when breathing"}))
    _wait_for_results(page, "chest pain when breathing")
    page.locator("#results > li a.code").first.click()
    page.wait_for_selector("#doc:not([hidden]) h2")
    assert page.locator("#doc h2 .code").inner_text() == "R07.1"
    assert page.locator("#doc dd[lang='fr']").count() == 1
    parent = page.locator("#doc .parent a.code")
    assert parent.inner_text() == "R07"
    parent.click()
    page.wait_for_function("() => document.querySelector('#doc h2 .code')?.textContent === 'R07'")
    children = page.eval_on_selector_all("#doc .children a.code", "links => links.map(link => link.textContent)")
    assert "R07.1" in children and all(code.startswith("R07.") for code in children)
    assert page.locator("#doc").inner_text().count("none: this is a category") == 1
    _screenshot(page, "serve-icd-code", tmp_path)
    page.go_back()
    page.wait_for_function("() => document.querySelector('#doc h2 .code')?.textContent === 'R07.1'")


def test_keyboard_alone(page: Any, served: str) -> None:
    page.goto(served)
    page.wait_for_selector("#index option[value='icd10']", state="attached")
    page.locator("body").click(position={"x": 5, "y": 700})  # focus away from the box, then the shortcut
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.press("Tab")  # to the collection picker
    assert page.evaluate("document.activeElement.id") == "index"
    page.keyboard.press("ArrowDown")  # cmed-zh -> icd10
    assert page.locator("#index").input_value() == "icd10"
    page.keyboard.press("Shift+Tab")
    page.keyboard.type("asthma")
    page.keyboard.press("Enter")
    _wait_for_results(page, "asthma")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#results a.code')"):
            break
    else:
        pytest.fail("Tab never reached a result's code link")
    code = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.wait_for_function("c => document.querySelector('#doc h2 .code')?.textContent === c", arg=code)
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#doc').hidden")
    assert page.locator("#results > li").count() == 10


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 800}])
def test_readable_at_desktop_and_narrow_widths(page: Any, served: str, tmp_path: Path,
                                               viewport: dict[str, int]) -> None:
    page.set_viewport_size(viewport)
    page.goto(served + "#" + urlencode({"index": "icd10", "q": "心肌梗死"}))
    _wait_for_results(page, "心肌梗死")
    # Nothing wider than the window, and the search box and results stay in view.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    box = page.locator("#q").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    assert page.locator("#results > li").first.is_visible()
    # CJK text is laid out with a real font: a Han character is about as wide as it is tall, not a missing-glyph box.
    width = page.evaluate("""() => { const span = document.createElement('span'); span.textContent = '心肌梗死';
        document.body.append(span); const w = span.getBoundingClientRect().width; span.remove(); return w; }""")
    assert width > 30
    if viewport["width"] < 600:
        _screenshot(page, "serve-narrow", tmp_path)


def test_users_own_file_shows_its_source_and_opens(page: Any, served: str, browser: Any, tmp_path: Path) -> None:
    page.goto(served)
    page.wait_for_selector("#index option[value='my-notes']", state="attached")
    page.select_option("#index", "my-notes")
    query = "pain on a deep breath"
    page.fill("#q", query)
    page.press("#q", "Enter")
    _wait_for_results(page, query)
    first = page.locator("#results > li").first
    assert "deep breath" in first.locator(".text").inner_text()
    source = first.locator(".source")
    assert "page 1" in source.inner_text() and "Ward notes › Chest pain" in source.inner_text()
    link = source.locator("a")
    assert link.inner_text().endswith("/documents/ward-notes.txt")
    _screenshot(page, "serve-files", tmp_path)
    with browser.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url.startswith(served + "api/file?index=my-notes&id=")
    assert "pleuritic pain" in tab.locator("body").inner_text()
    tab.close()
