"""faceswap ui in Debian's chromium: page load, the delay from a job's end to the page showing it (server-sent
events), and the one-frame convert preview, against a plain JSON fetch of the same server as the baseline.

Last line: `ratio: X.XX` = preview round trip / 1000 ms (the goal: under 1 s for one frame on CPU, so < 1.00).
Usage: python bench/ui.py   (needs /usr/bin/chromium: make browser)
"""
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from common import sample

from faceswap.extract import extract
from faceswap.training.loop import TrainSettings, train
from tests.helpers import launch  # the tests' own: `faceswap ui` in a child process


def main():
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        shutil.copy(sample("WolfgangLanger_Pexels.mp4"), ws / "a.mp4")
        extract([ws / "a.mp4"], ws / "facesets" / "a", progress=False)
        extract([sample("single_face.mp4")], ws / "facesets" / "b", progress=False)
        train(ws / "facesets" / "a", ws / "facesets" / "b", ws / "models" / "ab", TrainSettings(iterations=10),
              progress=False)
        server, url = launch(ws)
        base, token = url.split("/?token=")
        try:
            started = time.perf_counter()
            for _ in range(10):
                urllib.request.urlopen(urllib.request.Request(base + "/api/state", headers={
                    "X-Faceswap-Token": token})).read()
            fetch_ms = (time.perf_counter() - started) * 100
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
                page = browser.new_page()
                started = time.perf_counter()
                page.goto(url, wait_until="load")
                page.wait_for_function("document.getElementById('workspace').textContent.length > 0")
                load_ms = (time.perf_counter() - started) * 1000
                request = urllib.request.Request(base + "/api/jobs", method="POST", headers={
                    "Content-Type": "application/json", "X-Faceswap-Token": token, "Origin": base}, data=json.dumps({
                        "kind": "extract", "sources": ["a.mp4"], "output": "facesets/a2"}).encode())
                job = json.loads(urllib.request.urlopen(request).read())
                log = ws / ".faceswap-ui" / f"job-{job['id']}.log"
                page.wait_for_selector(f"tr[data-job='{job['id']}'][data-status=done]", timeout=120_000, state="attached")
                shown = time.time()
                ended = json.loads((ws / ".faceswap-ui" / "jobs.json").read_text())["jobs"][-1]["ended"]
                update_ms = (shown - ended) * 1000
                page.click("nav button[data-view=convert]")
                page.select_option("#convert-model", "models/ab")
                page.select_option("#convert-input", "a.mp4")
                page.dispatch_event("#convert-input", "change")
                page.wait_for_function("document.getElementById('preview-info').textContent.includes('face')")
                times = []
                for frame in (100, 250, 400):
                    page.locator("#convert-frame").fill(str(frame))
                    started = time.perf_counter()
                    page.dispatch_event("#convert-frame", "input")
                    page.wait_for_function(f"document.getElementById('preview-info').textContent.startsWith("
                                           f"'frame {frame}:')")
                    times.append((time.perf_counter() - started) * 1000 - 150)  # less the page's 150 ms debounce
                browser.close()
            assert log.is_file()
        finally:
            server.terminate()
            server.wait(30)
    print(f"JSON fetch of /api/state:            {fetch_ms:6.0f} ms")
    print(f"page load (HTML + first state):      {load_ms:6.0f} ms")
    print(f"job ended -> shown on the page:       {update_ms:6.0f} ms (server-sent events)")
    print(f"one-frame convert preview (3 frames): {', '.join(f'{t:.0f}' for t in times)} ms")
    print(f"ratio: {max(times) / 1000:.2f}")


if __name__ == "__main__":
    main()
