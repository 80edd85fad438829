"""Opens every page of the built book in headless Chromium and checks what
a reader would notice: `python3 .ci/browser-check.py BOOK_DIR SHOTS_DIR`.

For every page: no console errors and no failed requests; no `{{#`
directive left by a missing include and no ANCHOR marker in code; every
<img> loads and has alt text, every figure's <svg> is labelled. Once per
run: the hidden-lines toggle shows the hidden lines; the search finds
SIGALRM; the print page holds every chapter; the figures' text and lines,
the captions, the console blocks and the links keep their contrast with
the page in each of mdBook's five themes; no figure has text outside
its picture, text on top of other text, text cut by a box's edge, or an
arrow that ends next to nothing; at a phone's width, every figure's text
stays legible and the page does not scroll sideways. Screenshots of every chapter,
light and dark, and of every figure in every theme, go to SHOTS_DIR for
people to look at.

Run by .ci/run, which installs Debian's chromium and Python's playwright.
"""

import atexit
import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

from playwright.sync_api import sync_playwright

THEMES = ["light", "rust", "coal", "navy", "ayu"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# This machine's network is closed: without these flags Chromium keeps
# trying to reach Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The smallest text a figure may show at a phone's width (390 CSS px) in
# CSS pixels: below about 9 px a reader must zoom to read it.
MIN_PHONE_TEXT_PX = 9.0

PHONE_JS = """
() => Array.from(document.querySelectorAll('main figure.figure'))
    .filter(f => f.querySelector('svg')).map(f => {
  const svg = f.querySelector('svg');
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const sizes = Array.from(svg.querySelectorAll('text'))
    .map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
  return {id: f.id, smallest: Math.min(...sizes)};
})
"""

# WCAG 2: 4.5:1 for text, 3:1 for lines and shapes that carry meaning.
TEXT_CONTRAST = 4.5
GRAPHICS_CONTRAST = 3.0

CONTRAST_JS = """
() => {
  function rgb(color) {
    const m = color.match(/rgba?\\(([\\d.]+), ([\\d.]+), ([\\d.]+)/);
    return m ? [m[1], m[2], m[3]].map(Number) : null;
  }
  function luminance([r, g, b]) {
    const c = [r, g, b].map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function ratio(a, b) {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  }
  function background(el) {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      const v = rgb(c);
      if (v && !/rgba\\(.*, 0\\)$/.test(c)) return v;
    }
    return rgb(getComputedStyle(document.body).backgroundColor);
  }
  const page = background(document.querySelector('main'));
  const results = [];
  function check(what, el, color, min, against) {
    const c = rgb(color);
    if (!c) return;
    for (const bg of against) {
      results.push({what, min, ratio: ratio(c, bg),
                    text: (el.textContent || '').trim().slice(0, 40)});
    }
  }
  // Figure text sits on the page or in a box of quote colour.
  const probe = document.createElement('div');
  probe.style.background = 'var(--quote-bg)';
  document.body.appendChild(probe);
  const quote = rgb(getComputedStyle(probe).backgroundColor);
  probe.remove();
  for (const t of document.querySelectorAll('svg.figure text')) {
    check('figure text', t, getComputedStyle(t).fill, 4.5, [page, quote]);
  }
  for (const l of document.querySelectorAll(
      'svg.figure .line:not(.faint), svg.figure .box')) {
    check('figure line', l, getComputedStyle(l).stroke, 3.0, [page]);
  }
  for (const c of document.querySelectorAll('.listing .caption, figcaption')) {
    check('caption', c, getComputedStyle(c).color, 4.5, [background(c)]);
  }
  for (const c of document.querySelectorAll('code.language-console')) {
    check('console block', c, getComputedStyle(c).color, 4.5, [background(c)]);
  }
  for (const a of document.querySelectorAll('main a')) {
    check('link', a, getComputedStyle(a).color, 4.5, [background(a)]);
  }
  for (const p of document.querySelectorAll('main p')) {
    check('text', p, getComputedStyle(p).color, 4.5, [background(p)]);
  }
  return results;
}
"""


# Measured in the SVG's own units, so the width of the page does not
# matter. Text boxes are the font's whole line (ascent to descent): two
# lines of a label touch by a pixel or two without their letters meeting,
# so text overlaps only by more than that. An axis (`.faint`) may end in
# open space; any other arrow must end within 10 units of a box, a text
# or another line.
FIGURE_LAYOUT_JS = """
() => {
  const problems = [];
  const box = b => ({x0: b.x, y0: b.y, x1: b.x + b.width, y1: b.y + b.height});
  for (const svg of document.querySelectorAll('main svg.figure')) {
    const name = (svg.getAttribute('aria-labelledby') || '?').split(' ')[0];
    const view = svg.viewBox.baseVal;
    const texts = Array.from(svg.querySelectorAll('text')).map(t =>
      Object.assign(box(t.getBBox()), {text: t.textContent.trim().slice(0, 40)}));
    const rects = Array.from(svg.querySelectorAll('rect')).map(r => box(r.getBBox()));
    const lines = Array.from(svg.querySelectorAll('line, path'))
      .filter(l => !l.closest('marker'));
    for (const t of texts) {
      if (t.x0 < view.x - 0.5 || t.y0 < view.y - 0.5
          || t.x1 > view.x + view.width + 0.5 || t.y1 > view.y + view.height + 0.5)
        problems.push(`${name}: '${t.text}' leaves the picture`);
      for (const r of rects) {
        const meets = t.x0 < r.x1 && r.x0 < t.x1 && t.y0 < r.y1 && r.y0 < t.y1;
        const inside = t.x0 >= r.x0 && t.x1 <= r.x1 && t.y0 >= r.y0 && t.y1 <= r.y1;
        if (meets && !inside) problems.push(`${name}: '${t.text}' is cut by a box's edge`);
      }
    }
    texts.forEach((a, i) => texts.slice(i + 1).forEach(b => {
      const x = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
      const y = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
      if (x > 1 && y > 3) problems.push(`${name}: '${a.text}' overlaps '${b.text}'`);
    }));
    for (const l of lines) {
      if (!l.getAttribute('marker-end') || l.classList.contains('faint')) continue;
      const end = l.getPointAtLength(l.getTotalLength());
      const near = r => end.x >= r.x0 - 10 && end.x <= r.x1 + 10
                     && end.y >= r.y0 - 10 && end.y <= r.y1 + 10;
      const onLine = o => {
        for (let s = 0, n = o.getTotalLength(); s <= n; s += 1) {
          const p = o.getPointAtLength(s);
          if (Math.hypot(p.x - end.x, p.y - end.y) < 10) return true;
        }
        return false;
      };
      if (!rects.some(near) && !texts.some(near)
          && !lines.some(o => o !== l && onLine(o)))
        problems.push(`${name}: an arrow ends at (${Math.round(end.x)}, ` +
                      `${Math.round(end.y)}), next to nothing`);
    }
  }
  return problems;
}
"""

def serve(directory, site_path):
    """Serves `directory` under `site_path` (`/NAME/`, as GitHub Pages
    would) on a free loopback port; returns the book's URL."""
    root = Path(tempfile.mkdtemp(prefix="browser-check-"))
    # Gone at exit, as every run used to leave one behind in /tmp.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    mount = root / site_path.strip("/")
    mount.parent.mkdir(parents=True, exist_ok=True)
    mount.symlink_to(directory.resolve(), target_is_directory=True)
    not_found = (directory / "404.html").read_bytes()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        # As GitHub Pages does: the book's 404.html for a missing address.
        def send_error(self, code, message=None, explain=None):
            if code != 404:
                return super().send_error(code, message, explain)
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(not_found)))
            self.end_headers()
            self.wfile.write(not_found)

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}{site_path}"


def main():
    book, shots = Path(sys.argv[1]), Path(sys.argv[2])
    shots.mkdir(parents=True, exist_ok=True)
    # Where book.toml says the book is published: the 404 page's links
    # start there.
    config = tomllib.loads(Path("book.toml").read_text())
    site_path = config.get("output", {}).get("html", {}).get("site-url", "/")
    base = serve(book, site_path if site_path.endswith("/") else site_path + "/")
    pages = sorted(
        p.relative_to(book).as_posix()
        for p in book.glob("*.html")
        if p.name not in ("toc.html",)
    )
    problems = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        errors = []
        page.on(
            "console",
            lambda m: errors.append(f"console {m.type}: {m.text}")
            if m.type == "error"
            else None,
        )
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on(
            "response",
            lambda r: errors.append(f"response {r.status}: {r.url}")
            if r.status >= 400
            else None,
        )
        # A request the browser itself cancels (ERR_ABORTED: a favicon still
        # loading when the next page is opened) is no fault of the book; a
        # missing file answers 404, which the response handler reports.
        page.on(
            "requestfailed",
            lambda r: errors.append(f"request failed: {r.url} ({r.failure})")
            if "ERR_ABORTED" not in (r.failure or "")
            else None,
        )

        def set_theme(name):
            page.evaluate(f"localStorage.setItem('mdbook-theme', '{name}')")

        # Every page: errors, leftovers, images, labels.
        page.goto(base + "index.html")
        set_theme("light")
        for name in pages:
            errors.clear()
            page.goto(base + name, wait_until="load")
            page.wait_for_load_state("networkidle")
            for e in errors:
                problems.append(f"{name}: {e}")
            text = page.evaluate("document.querySelector('main').textContent")
            if "{{#" in text:
                problems.append(f"{name}: a raw {{{{# directive is left")
            code = page.evaluate(
                "Array.from(document.querySelectorAll('pre code'))"
                ".map(c => c.textContent).join('\\n')"
            )
            if re.search(r"ANCHOR(_END)?:", code):
                problems.append(f"{name}: an ANCHOR marker is shown in code")
            for img in page.evaluate(
                "Array.from(document.images).map(i => ({src: i.src, "
                "ok: i.complete && i.naturalWidth > 0, alt: i.alt}))"
            ):
                if not img["ok"]:
                    problems.append(f"{name}: image {img['src']} did not load")
                if not img["alt"].strip():
                    problems.append(f"{name}: image {img['src']} has no alt text")
            for svg in page.evaluate(
                "Array.from(document.querySelectorAll('main svg.figure'))"
                ".map(s => ({role: s.getAttribute('role'), label: "
                "(s.getAttribute('aria-labelledby') || '').split(' ')"
                ".map(id => (document.getElementById(id) || {}).textContent"
                " || '').join(' ').trim()}))"
            ):
                if svg["role"] != "img" or not svg["label"]:
                    problems.append(f"{name}: a figure without role=img and a label")
            for p in page.evaluate(FIGURE_LAYOUT_JS):
                problems.append(f"{name}: {p}")

        # A missing address, deep down, gets the 404 page, styles and all.
        errors.clear()
        page.goto(base + "no/such/chapter.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        title = page.evaluate("document.querySelector('main h1').textContent")
        if title.strip() != "Page not found":
            problems.append(f"a missing page shows {title!r}, not the 404 page")
        page.screenshot(path=str(shots / "404-at-depth-light.png"))
        # Its own address answers 404, as it should (and the console says
        # so); nothing else it loads may fail.
        missing = base + "no/such/chapter.html"
        for e in errors:
            if e.startswith("console") and "status of 404" in e:
                continue
            if e.startswith("response 404") and e.endswith(missing):
                continue
            problems.append(f"the 404 page at depth: {e}")

        # The hidden-lines toggle shows the hidden lines.
        page.goto(base + "ch02-signals.html")
        block = page.locator("pre:has(code .boring)").first
        hidden = "el => Array.from(el.querySelectorAll('.boring'))" \
                 ".every(b => getComputedStyle(b).display === 'none')"
        if not block.evaluate(hidden):
            problems.append("hidden lines are visible before the toggle")
        block.hover()
        block.locator("button[title='Show hidden lines']").click()
        shown = "el => Array.from(el.querySelectorAll('.boring'))" \
                ".every(b => getComputedStyle(b).display !== 'none')"
        if not block.evaluate(shown):
            problems.append("the hidden-lines toggle did not show the hidden lines")

        # Search finds SIGALRM.
        page.goto(base + "index.html")
        page.click("#mdbook-search-toggle")
        page.locator("#mdbook-searchbar").press_sequentially("SIGALRM")
        try:
            page.wait_for_selector("#mdbook-searchresults li", timeout=10000)
        except Exception:
            problems.append("search for SIGALRM found nothing")

        # The print page holds every chapter, by its title.
        page.goto(base + "print.html")
        printed = page.evaluate("document.querySelector('main').textContent")
        for name in pages:
            if name in ("print.html", "404.html", "index.html"):
                continue
            html = (book / name).read_text()
            main = html[html.find("<main") :]
            m = re.search(r"<h1[^>]*>(.*?)</h1>", main, re.S)
            if not m:
                continue
            title = re.sub(r"<[^>]+>", "", m.group(1)).strip()
            if title not in printed:
                problems.append(f"print.html lacks the chapter {name} ({title})")

        # Contrast, and screenshots of every figure, in every theme.
        chapters = [p for p in pages if re.match(r"ch\d\d-", p)]
        for theme in THEMES:
            set_theme(theme)
            for name in chapters:
                page.goto(base + name)
                for r in page.evaluate(CONTRAST_JS):
                    if r["ratio"] < r["min"]:
                        problems.append(
                            f"{name}, {theme} theme: {r['what']} "
                            f"'{r['text']}' has contrast {r['ratio']:.2f}, "
                            f"below {r['min']}"
                        )
                figures = page.locator("figure.figure")
                for i in range(figures.count()):
                    fig = figures.nth(i)
                    fig_id = fig.get_attribute("id") or f"{name}-{i}"
                    fig.screenshot(path=str(shots / f"{fig_id}-{theme}.png"))

        # One screenshot per chapter, light and dark.
        for theme in ("light", "navy"):
            set_theme(theme)
            for name in chapters:
                page.goto(base + name)
                stem = name.removesuffix(".html")
                page.screenshot(path=str(shots / f"{stem}-{theme}.png"))
        # On a phone the figures stay legible: each scrolls sideways in its
        # own box rather than shrinking its text below MIN_PHONE_TEXT_PX,
        # and the page itself does not scroll sideways.
        phone = browser.new_context(viewport={"width": 390, "height": 844})
        small = phone.new_page()
        small.goto(base + "index.html")
        small.evaluate("localStorage.setItem('mdbook-theme', 'light')")
        for name in chapters:
            small.goto(base + name)
            for r in small.evaluate(PHONE_JS):
                if r["smallest"] < MIN_PHONE_TEXT_PX:
                    problems.append(
                        f"{name}, at 390 px: {r['id']}'s smallest text is "
                        f"{r['smallest']:.1f} px, below {MIN_PHONE_TEXT_PX}"
                    )
            wide = small.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            if wide > 1:
                problems.append(f"{name}, at 390 px: the page scrolls sideways")
            figures = small.locator("figure.figure")
            for i in range(figures.count()):
                fig = figures.nth(i)
                fig_id = fig.get_attribute("id") or f"{name}-{i}"
                fig.screenshot(path=str(shots / f"{fig_id}-phone.png"))
        phone.close()
        browser.close()

    # The same contrast problem shows on every page: say it once.
    problems = list(dict.fromkeys(problems))
    for p in problems:
        print(f"browser-check: {p}", file=sys.stderr)
    print(
        f"browser-check: {len(pages)} pages, {len(problems)} problems; "
        f"screenshots in {shots}"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
