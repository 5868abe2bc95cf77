"""faceswap ui in a real browser (Debian's chromium, driven by Playwright): a project from the sample clips,
extract both, a short training whose preview appears and changes, a convert tuned on a frame, rendered and
downloaded with its manifest. Screenshots of the four views go to $FACESWAP_UI_SCREENSHOTS (or the test's
temporary folder)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="Debian's chromium is not installed (make test installs it with apt-get)")


@pytest.fixture
def server(tmp_path, sample_a, sample_b, face_models):
    from helpers import launch

    workspace = tmp_path / "project"
    workspace.mkdir()
    shutil.copy(sample_a, workspace / "a.mp4")
    shutil.copy(sample_b, workspace / "b.mp4")
    process, url = launch(workspace)
    yield url, workspace
    process.terminate()
    process.wait(60)


def test_project_training_and_convert_in_a_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, workspace = server
    shots = Path(os.environ.get("FACESWAP_UI_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def mark(what):  # how long each part took, printed with -s
        print(f"{time.perf_counter() - started:6.1f} s  {what}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        # project: extract both clips
        page.select_option("#source-a", "a.mp4")
        page.click("#extract-a")
        page.select_option("#source-b", "b.mp4")
        page.click("#extract-b")
        page.click("nav button[data-view=jobs]")
        expect(page.locator("tr[data-status=done]")).to_have_count(2, timeout=180_000)
        page.screenshot(path=str(shots / "jobs.png"))
        mark("extracted")
        page.click("nav button[data-view=project]")
        page.select_option("#faceset-pick", "facesets/b")
        page.dispatch_event("#faceset-pick", "change")
        expect(page.locator("#faceset-faces img")).to_have_count(72, timeout=30_000)
        page.locator("#faceset-faces img").nth(0).click()
        page.locator("#faceset-faces img").nth(1).click()
        page.click("#faceset-remove")
        expect(page.locator("#faceset-faces img")).to_have_count(70, timeout=30_000)
        expect(page.locator("#faceset-count")).to_contain_text("70 faces")
        page.screenshot(path=str(shots / "project.png"))
        mark("faces removed")
        # training: the preview appears, then changes
        page.click("nav button[data-view=training]")
        page.select_option("#train-a", "facesets/a")
        page.select_option("#train-b", "facesets/b")
        page.fill("#train-iterations", "10")
        page.fill("#train-preview-every", "5")
        page.click("#train-start")
        preview = page.locator("#train-preview")
        page.wait_for_function("document.getElementById('train-preview').src.includes('preview.png')",
                               timeout=180_000)
        first = preview.get_attribute("src")
        page.wait_for_function(f"document.getElementById('train-preview').src !== {json.dumps(first)}",
                               timeout=180_000)
        expect(page.locator("#train-status")).to_contain_text("step", timeout=10_000)
        page.wait_for_function("document.getElementById('train-status').textContent.includes('done')",
                               timeout=300_000)
        page.wait_for_timeout(1200)
        page.screenshot(path=str(shots / "training.png"))
        mark("trained")
        # convert: a frame with the current settings, changed settings, then the render
        page.click("nav button[data-view=convert]")
        page.select_option("#convert-model", "models/ab")
        page.select_option("#convert-input", "a.mp4")
        page.dispatch_event("#convert-input", "change")
        page.wait_for_function("document.getElementById('preview-info').textContent.includes('face')",
                               timeout=60_000)
        page.locator("#convert-frame").fill("200")
        page.dispatch_event("#convert-frame", "input")
        page.wait_for_function("document.getElementById('preview-info').textContent.startsWith('frame 200')",
                               timeout=30_000)
        before = page.locator("#convert-preview").get_attribute("src")
        page.select_option("[data-setting=color]", "none")
        page.wait_for_function(f"document.getElementById('convert-preview').src !== {json.dumps(before)}",
                               timeout=30_000)
        assert "1 face(s) swapped" in page.locator("#preview-info").text_content()
        halves = page.evaluate("""() => { const img = document.getElementById('convert-preview');
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0); const w = c.width / 2, h = c.height;
            const a = g.getImageData(0, 0, w, h).data, b = g.getImageData(w, 0, w, h).data;
            let d = 0; for (let i = 0; i < a.length; i += 4) d += Math.abs(a[i] - b[i]); return d / (a.length / 4); }""")
        assert halves > 1  # source and swapped differ: the face was replaced in the right half only
        expect(page.locator("#consent")).to_contain_text("Content Credentials")
        page.fill("#convert-output", "output/a_as_b.mp4")
        page.click("#render")
        expect(page.locator("#download-manifest")).to_be_visible(timeout=300_000)
        page.screenshot(path=str(shots / "convert.png"))
        mark("rendered")
        with page.expect_download() as download:
            page.click("#download-manifest")
        manifest = json.loads(Path(download.value.path()).read_text())
        browser.close()
    assert manifest["synthetic"] is True and manifest["input"]["name"] == "a.mp4"
    assert (workspace / "output" / "a_as_b.mp4").stat().st_size > 100_000
    assert all((shots / f"{view}.png").stat().st_size > 10_000 for view in ("project", "jobs", "training", "convert"))


ATTACK = """<!doctype html><title>another site</title><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink" action="VICTIM/api/jobs">
  <input name='{"kind": "extract", "sources": ["b.mp4"], "output": "facesets/f", "x": "' value='"}'></form>
<iframe id="framed" src="VICTIM/"></iframe>
<script>
const victim = "VICTIM", results = {};
const pipeline = "work_dir: OUTSIDE/work\\nidentities:\\n  a: {sources: [OUTSIDE/secret.mp4]}\\n" +
                 "  b: {sources: [OUTSIDE/secret.mp4]}\\ntrain: {iterations: 1}\\n";
async function attempt(name, url, options) {
  try { const r = await fetch(victim + url, options); results[name] = r.type === "opaque" ? "opaque" : await r.text(); }
  catch (e) { results[name] = "blocked: " + e.name; }
}
(async () => {
  const plain = {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}};
  await attempt("text/plain POST", "/api/jobs",
                {...plain, body: JSON.stringify({kind: "extract", sources: ["b.mp4"], output: "facesets/t"})});
  document.getElementById("form").submit();
  await attempt("upload", "/api/upload?name=p.yaml&folder=x", {...plain, body: pipeline});
  await attempt("run", "/api/jobs", {...plain, body: JSON.stringify({kind: "run", pipeline: "x/p.yaml"})});
  await attempt("read with credentials", "/api/state", {credentials: "include"});
  await attempt("JSON POST with credentials", "/api/jobs", {method: "POST", credentials: "include",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({kind: "run", pipeline: "x/p.yaml"})});
  await new Promise((done) => setTimeout(done, 1500));  // the form and the iframe load meanwhile
  window.results = results;
})();
</script></body>"""


def test_another_origin_cannot_drive_the_page(tmp_path, sample_b):
    """A page on another local port, opened while the real page is open (its cookie set: cookies ignore the port,
    and SameSite counts another port as the same site) tries a text/plain POST, a form POST, an upload and a run,
    fetch with credentials and framing the page. Every request is refused and nothing is written anywhere; the
    page itself still works."""
    import http.server
    import threading

    import numpy as np
    from playwright.sync_api import expect, sync_playwright

    from faceswap import images
    from helpers import launch

    workspace, outside = tmp_path / "project", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    shutil.copy(sample_b, workspace / "b.mp4")
    shutil.copy(sample_b, outside / "secret.mp4")
    process, url = launch(workspace)
    victim = url.split("/?token=")[0]

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ATTACK.replace("VICTIM", victim).replace("OUTSIDE", str(outside)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            context = browser.new_context()
            own = context.new_page()
            own.goto(url)
            expect(own.locator("#workspace")).not_to_be_empty(timeout=30_000)
            assert "token" not in own.url  # the cookie holds it now
            before = sorted(str(p) for p in tmp_path.rglob("*"))
            other = context.new_page()
            sent, answers = [], []  # a response the page may not read (CORS, CORP) shows as a failed request
            other.on("request", lambda r: sent.append(r.url) if r.url.startswith(victim) else None)
            other.on("response", lambda r: answers.append((r.request.method, r.url, r.status))
                     if r.url.startswith(victim) else None)
            other.goto(f"http://127.0.0.1:{attacker.server_port}/")
            results = other.wait_for_function("window.results", timeout=30_000).json_value()
            assert len(results) == 5 and all(r in ("opaque", "blocked: TypeError") for r in results.values()), results
            frames = other.main_frame.child_frames  # the form's target and the framed page: neither shows it
            assert len(frames) == 2 and all(f.query_selector("#workspace") is None for f in frames)
            assert len(sent) >= 7 and {status for _, _, status in answers} == {403}, (sent, answers)
            assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
            assert not (workspace / ".faceswap-ui" / "jobs.json").exists()
            # the page itself still works: an upload from its own form
            images.write_png(tmp_path / "face.png", np.zeros((16, 16, 3), np.uint8))
            own.set_input_files("#upload-file", str(tmp_path / "face.png"))
            own.click("#upload")
            own.wait_for_function("!document.getElementById('message').textContent", timeout=10_000)
            browser.close()
        assert (workspace / "uploads" / "face.png").is_file()
    finally:
        attacker.shutdown()
        process.terminate()
        process.wait(60)
