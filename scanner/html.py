"""A scan's details file -> one self-contained HTML report a reviewer can read.

One file, nothing fetched: the face crops are inlined as data URIs, style and script are
inline, and a Content-Security-Policy forbids the page any other source, so opening it from
disk sends nothing anywhere. It holds a summary (counts per status and verdict, a histogram of
the scores against the threshold), then one card per video, most suspicious first, with the
verdict, each scored person's face crops in frame order with the attention of each frame
drawn under it, frame indices and times, and the message of videos that were not scored.
Filters (status, verdict) and the order are applied by a small inline script and kept in the
URL's fragment (``report.html#status=ok&verdict=FAKE&sort=path``).

The crops come from the JPEG strips the scan wrote beside the details file (``NAME.crops/``,
see ``scanner.report.ResultWriter``); a video whose crops are missing gets its frame numbers
and attention without pictures.

A details file may come from someone else, and the report is meant to be passed on: every
field is checked for the type a scan writes (else ReportError), every text is escaped, and
only crops strips inside the crops folder are inlined (``scanner.report.crops_file``).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from scanner.files import replacing
from scanner.report import STATUSES, crops_dir, crops_file

log = logging.getLogger(__name__)

ATTENTION_LABEL = "how much the model weighed each frame"
SHOWN = 76  # pixels: a crop's side on the page (the strips hold THUMB_SIZE-pixel crops)
UNSCORED = "unscored"  # the verdict filter's value for videos without a score


class ReportError(ValueError):
    """The input is not a dfscan details file."""


@dataclass(frozen=True)
class Video:
    detail: dict
    rank: int  # 0: most suspicious

    @property
    def verdict(self) -> str:
        return self.detail.get("label") or UNSCORED


def read_details(path: Path) -> list[dict]:
    """The entries of a details file (JSON Lines, one per video). A last line cut short by a
    killed scan is left out with a warning; anything else that is not a dfscan details line
    is a ReportError."""
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:  # as ResultWriter
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a cut last line
                log.warning("%s: line %d is incomplete and left out", path, number)
                continue
            raise ReportError(
                f"{path} line {number} is not JSON ({e.msg}): pass the JSON Lines file a scan "
                "wrote with --details, not the CSV"
            ) from e
        if not isinstance(entry, dict) or "path" not in entry or "status" not in entry:
            raise ReportError(f"{path} line {number} is not a dfscan details entry")
        entry = _upgrade(entry)
        problem = _problem(entry)
        if problem:
            raise ReportError(f"{path} line {number} is not a dfscan details entry: {problem}")
        entries.append(entry)
    return entries


# Whole numbers beyond this are no count or size a scan writes, and do not convert to float
# (a 400-digit "fps" would end the report in an OverflowError).
_MAX_INT = 2**53


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _MAX_INT


def _is_finite(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


# What a scan writes in each field the page shows (None, or the field left out, is fine
# for all but path and status). "number" allows NaN and infinities (OpenCV's fps of a broken
# file), which format as text; scores and thresholds place bars and sort the cards.
_KINDS = {
    "text": (lambda v: isinstance(v, str), "text"),
    "int": (_is_int, "a whole number"),
    "number": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "finite": (_is_finite, "a finite number"),
    "ints": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of whole numbers"),
    "finites": (lambda v: isinstance(v, list) and all(map(_is_finite, v)), "a list of numbers"),
    "times": (
        lambda v: isinstance(v, list) and all(t is None or _is_finite(t) for t in v),
        "a list of numbers",
    ),
    "list": (lambda v: isinstance(v, list), "a list"),
}
_VIDEO_FIELDS = {
    "path": "text",
    "status": "text",
    "score": "finite",
    "label": "text",
    "person": "int",
    "threshold": "finite",
    "message": "text",
    "frames_sampled": "int",
    "width": "int",
    "height": "int",
    "fps": "number",
    "duration_s": "number",
    "model": "text",
    "identity": "text",
    "faces_left_unscored": "int",
    "people": "list",
}
_PERSON_FIELDS = {
    "person": "int",
    "score": "finite",
    "label": "text",
    "frame_indices": "ints",
    "times_s": "times",
    "face_detected": "list",
    "attention": "finites",
}


def _field_problem(entry: dict, fields: dict[str, str], where: str) -> str | None:
    for name, kind in fields.items():
        value = entry.get(name)
        ok, what = _KINDS[kind]
        if value is not None and not ok(value):
            return f"{where}{name} {json.dumps(value)[:60]} is not {what}"
    return None


def _problem(entry: dict) -> str | None:
    """Why ``entry`` is not what a scan writes, or None: each shown field has its type."""
    if not isinstance(entry["path"], str) or not isinstance(entry["status"], str):
        return "path and status are not text"
    if entry["status"] not in STATUSES:
        return f"status {json.dumps(entry['status'])[:40]} is none of {', '.join(STATUSES)}"
    problem = _field_problem(entry, _VIDEO_FIELDS, "")
    if problem:
        return problem
    for i, person in enumerate(entry.get("people") or [], 1):
        if not isinstance(person, dict):
            return f"people[{i}] is not an object"
        problem = _field_problem(person, _PERSON_FIELDS, f"people[{i}].")
        if problem:
            return problem
    return None


def _upgrade(entry: dict) -> dict:
    """Details written before per-person scoring hold one face's fields at the top level."""
    if "people" not in entry:
        people = []
        if entry.get("status") == "ok" and entry.get("attention"):
            people.append(
                {
                    "person": 1,
                    "score": entry.get("score"),
                    "label": entry.get("label"),
                    "frame_indices": entry.get("frame_indices", []),
                    "face_detected": entry.get("face_detected", []),
                    "attention": entry.get("attention", []),
                }
            )
        entry = {**entry, "people": people, "person": 1 if people else None}
    return entry


def rank(entries: list[dict]) -> list[Video]:
    """Most suspicious first: scored videos by score, highest first, then the others by
    status (in STATUSES order) and path."""

    def key(e: dict) -> tuple:
        if e.get("score") is not None:
            return (0, -float(e["score"]), e["path"])
        status = e.get("status")
        return (1, STATUSES.index(status) if status in STATUSES else len(STATUSES), e["path"])

    return [Video(e, i) for i, e in enumerate(sorted(entries, key=key))]


def _crops_uri(details: Path, person: dict) -> str | None:
    """The person's crops strip as a data URI; None (the frames shown without pictures)
    when there is none, it is missing, or ``crops`` names anything but a strip in the
    details file's crops folder (see ``crops_file``): that is never read."""
    rel = person.get("crops")
    if not rel:
        return None
    path = crops_file(details, rel)
    if path is None:
        log.warning(
            "%s: face crops %r are not a strip in %s: left out", details, rel, crops_dir(details)
        )
        return None
    try:
        data = path.read_bytes()
    except OSError:
        log.warning("%s: face crops %s not found", details, rel)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _token(text: str) -> str:
    """``text`` as one CSS class name: only letters, digits, '_' and '-' kept."""
    return re.sub(r"[^A-Za-z0-9_-]", "", text)


def _histogram(videos: list[Video], bins: int = 20) -> str:
    """Inline SVG: scores of the scored videos in ``bins`` bins over 0..1, a line at each
    threshold."""
    scores = [float(v.detail["score"]) for v in videos if v.detail.get("score") is not None]
    counts = [0] * bins
    for s in scores:
        # a score on an edge is in the bin above it, as a score at the threshold is FAKE;
        # out-of-range scores in the end bins
        counts[min(int(min(max(s, 0.0), 1.0) * bins), bins - 1)] += 1
    w, h, pad = 400, 120, 20
    head = 30  # room above the bars for the counts and the threshold's label
    top = max(counts) or 1
    bar_w = w / bins
    parts = [
        f'<svg class="hist" viewBox="0 0 {w + 2 * pad} {h + head + pad}" role="img" '
        f'aria-label="histogram of {len(scores)} scores">'
    ]
    for i, c in enumerate(counts):
        if c:
            bh = c / top * h
            x = pad + i * bar_w
            lo, hi = i / bins, (i + 1) / bins
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{head + h - bh:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{bh:.1f}"><title>{c} video{"s" if c > 1 else ""} scored '
                f"{lo:.2f} to {hi:.2f}</title></rect>"
            )
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{head + h - bh - 3:.1f}" class="n">{c}</text>'
            )
    thresholds = {v.detail.get("threshold") for v in videos} - {None}
    for t in sorted(float(t) for t in thresholds):
        x = pad + t * w
        parts.append(
            f'<line class="thr" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{head + h}"/>'
            f'<text class="thr" x="{x + 3:.1f}" y="12">threshold {t:.3f}</text>'
        )
    parts.append(f'<line class="axis" x1="{pad}" x2="{pad + w}" y1="{head + h}" y2="{head + h}"/>')
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<text x="{pad + tick * w:.1f}" y="{head + h + 14}" class="tick">{tick}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _person_html(
    details: Path,
    person: dict,
    styles: list[str],
    uid: str,
    scored: bool,
    threshold: float | None,
) -> str:
    """One person's heading and strip of crops, attention bars, frame indices and times."""
    indices = person.get("frame_indices") or []
    attention = person.get("attention") or []
    detected = person.get("face_detected") or [True] * len(indices)
    times = person.get("times_s") or [None] * len(indices)
    uri = _crops_uri(details, person)
    cls = f"s{_token(uid)}"
    if uri:
        styles.append(f".{cls}{{background-image:url({uri})}}")
    top = max(attention, default=0) or 1
    equal = 1 / len(attention) if attention else 0
    frames = []
    for k, index in enumerate(indices):
        a = attention[k] if k < len(attention) else None
        seen = detected[k] if k < len(detected) else True
        crop = (
            f'<div class="crop {cls}" style="background-position:-{k * SHOWN}px 0"></div>'
            if uri
            else '<div class="crop none">no crop</div>'
        )
        t = times[k] if k < len(times) else None
        bar = (
            f'<div class="att" title="attention {a:.4f}">'
            f'<span style="height:{a / top * 100:.1f}%"></span>'
            f'<i style="bottom:{min(1.0, equal / top) * 100:.1f}%"></i></div>'
            if a is not None
            else '<div class="att"></div>'
        )
        note = "" if seen else ' title="face not detected in this frame: box of the nearest"'
        frames.append(
            f'<figure class="frame{"" if seen else " missed"}"{note}>{crop}{bar}'
            f"<figcaption><b>{'' if a is None else f'{a:.3f}'}</b><br>#{index}"
            f"{'' if t is None else f'<br>{t:.2f} s'}</figcaption></figure>"
        )
    found = sum(bool(d) for d in detected)
    label = person.get("label") or ""
    number = escape(str(person.get("person")))
    mark = ' <span class="tag">the video\'s score</span>' if scored else ""
    return (
        f'<section class="person" data-person="{number}">'
        f'<h3>Person {number}: <span class="v {_token(label)}">{escape(label)}</span> '
        f"{_score_text(person.get('score'), threshold)}{mark} "
        f"<small>face detected in {found} of {len(detected)} frames</small></h3>"
        f'<div class="strip">{"".join(frames)}</div>'
        "</section>"
    )


def _apart(score: float, threshold: float) -> tuple[str, str]:
    """Score and threshold as text, with three decimals or as many more as tell them apart
    (0.4996 against 0.5 is not "0.500 (threshold 0.500)", which reads as FAKE)."""
    for digits in range(3, 17):
        a, b = f"{score:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b or score == threshold:
            return a, b
    return repr(score), repr(threshold)


def _score_text(score: float | None, threshold: float | None) -> str:
    """A person's score, with the digits that tell it from the threshold."""
    if score is None:
        return ""
    return f"{score:.3f}" if threshold is None else _apart(score, threshold)[0]


def _card(details: Path, v: Video, styles: list[str]) -> str:
    d = v.detail
    status = d.get("status", "")
    score = d.get("score")
    threshold = d.get("threshold")
    people = d.get("people") or []
    facts = []
    # read_details checked the numbers' types; they are escaped all the same, as all text
    if d.get("width") and d.get("height"):
        facts.append(escape(f"{d['width']}x{d['height']}"))
    if d.get("fps"):
        facts.append(escape(f"{d['fps']:g} fps"))
    if d.get("duration_s") is not None:
        facts.append(escape(f"{d['duration_s']:g} s"))
    if d.get("frames_sampled"):
        facts.append(escape(f"{d['frames_sampled']} frames sampled"))
    if people:
        facts.append(f"{len(people)} {'person' if len(people) == 1 else 'people'} scored")
    if d.get("faces_left_unscored"):
        facts.append(escape(f"{d['faces_left_unscored']} more faces left unscored"))
    if d.get("identity") and len(people) > 1:
        facts.append(f"tracks kept apart by {escape(d['identity'].replace('_', ' '))}")
    if score is not None and threshold is not None:
        shown, line = _apart(score, threshold)
        meter = (
            f'<span class="meter" title="score {shown}, threshold {line}">'
            f'<span style="width:{score * 100:.1f}%"></span>'
            f'<i style="left:{threshold * 100:.1f}%"></i></span>'
        )
        head = (
            f'<span class="v {_token(v.verdict)}">{escape(v.verdict)}</span> score {shown} '
            f"(threshold {line}"
            + (
                f", person {escape(str(d.get('person')))} of {len(people)}"
                if len(people) > 1
                else ""
            )
            + f"){meter}"
        )
    else:
        head = (
            f'<span class="v unscored">not scored</span> <span class="st">{escape(status)}</span>'
        )
    message = f'<p class="msg">{escape(d["message"])}</p>' if d.get("message") else ""
    persons = "".join(  # a class per strip: by place, as two entries may share a number
        _person_html(
            details, p, styles, f"{v.rank}-{i}", p.get("person") == d.get("person"), threshold
        )
        for i, p in enumerate(people)
    )
    return (
        f'<article class="card" data-status="{escape(status)}" data-verdict="{escape(v.verdict)}" '
        f'data-score="{"" if score is None else f"{score:.6f}"}" data-rank="{v.rank}" '
        f'data-path="{escape(d["path"])}">'
        f'<h2 title="{escape(d["path"])}">{escape(d["path"])}</h2>'
        f'<p class="head">{head}</p>'
        f'<p class="facts">{" · ".join(facts)}</p>{message}{persons}</article>'
    )


def _summary(videos: list[Video]) -> str:
    statuses = Counter(v.detail.get("status") for v in videos)
    verdicts = Counter(v.verdict for v in videos)
    rows = "".join(
        f"<tr><td>{escape(str(s))}</td><td>{n}</td></tr>"
        for s, n in sorted(
            statuses.items(), key=lambda x: STATUSES.index(x[0]) if x[0] in STATUSES else 99
        )
    )
    vrows = "".join(
        f'<tr><td><span class="v {k}">{"not scored" if k == UNSCORED else k}</span></td>'
        f"<td>{verdicts[k]}</td></tr>"
        for k in ("FAKE", "REAL", UNSCORED)
        if verdicts[k]
    )
    return (
        '<section id="summary"><div><h3>Status</h3><table>'
        f"{rows}</table></div><div><h3>Verdict</h3><table>{vrows}</table></div>"
        f"<div><h3>Scores</h3>{_histogram(videos)}</div></section>"
    )


def _select(name: str, label: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{escape(v)}">{escape(t)}</option>' for v, t in options)
    return f'<label>{label} <select id="f-{name}" name="{name}">{opts}</select></label>'


_STYLE = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px 24px;color:#1d2329;background:#f4f5f7}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 4px;word-break:break-all}
h3{font-size:13px;margin:8px 0 4px}small{color:#5b6670;font-weight:normal}
.sub{color:#5b6670;margin:0 0 12px}
#summary{display:flex;gap:32px;flex-wrap:wrap;background:#fff;padding:8px 16px;border-radius:6px}
#summary table{border-collapse:collapse}#summary td{padding:1px 12px 1px 0}
.hist{width:440px;height:170px}.hist rect{fill:#5b7fa6}.hist text{font-size:10px;fill:#333}
.hist .n{text-anchor:middle}.hist .tick{text-anchor:middle}
.hist line.thr{stroke:#c0392b;stroke-width:2;stroke-dasharray:4 2}.hist text.thr{fill:#c0392b}
.hist line.axis{stroke:#333}
#controls{margin:12px 0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
.legend{color:#5b6670;margin:0 0 12px;max-width:900px}
.card{background:#fff;border-radius:6px;padding:10px 14px;margin:0 0 12px;
  border-left:5px solid #98a2ab}
.card[data-verdict=FAKE]{border-left-color:#c0392b}.card[data-verdict=REAL]{border-left-color:#2e8b57}
.v{font-weight:700;padding:0 6px;border-radius:3px;color:#fff;background:#98a2ab}
.v.FAKE{background:#c0392b}.v.REAL{background:#2e8b57}
.st{font-family:monospace}.head{margin:2px 0}.facts{color:#5b6670;margin:2px 0}
.msg{margin:4px 0;padding:4px 8px;background:#fff6e0;border-radius:4px}
.meter{display:inline-block;position:relative;width:160px;height:10px;background:#e3e6ea;
  margin-left:10px;border-radius:5px;vertical-align:middle}
.meter span{position:absolute;left:0;top:0;bottom:0;background:#5b7fa6;border-radius:5px}
.meter i{position:absolute;top:-3px;bottom:-3px;width:2px;background:#c0392b}
.tag{font-size:11px;background:#fdecea;color:#c0392b;padding:0 5px;border-radius:3px}
.strip{display:flex;gap:3px;overflow-x:auto;padding-bottom:4px}
.frame{margin:0;width:76px;flex:none;text-align:center;font-size:11px;color:#333}
.crop{width:76px;height:76px;background-repeat:no-repeat;background-color:#ddd;border-radius:2px;
  background-size:auto 76px}
.crop.none{line-height:76px;color:#888}
.missed .crop{opacity:.45}
.att{position:relative;height:28px;background:#f0f2f4;margin-top:2px}
.att span{position:absolute;left:20%;right:20%;bottom:0;background:#e08a1e}
.att i{position:absolute;left:0;right:0;border-top:1px dashed #555}
figcaption b{font-weight:600}
[hidden]{display:none!important}
"""

_SCRIPT = """
(function () {
  var box = document.getElementById('cards');
  var cards = Array.prototype.slice.call(box.querySelectorAll('article.card'));
  var f = {status: document.getElementById('f-status'),
           verdict: document.getElementById('f-verdict'),
           sort: document.getElementById('f-sort')};
  var order = {
    suspicion: function (a, b) { return a.dataset.rank - b.dataset.rank; },
    path: function (a, b) {
      var x = a.dataset.path, y = b.dataset.path;
      return x < y ? -1 : x > y ? 1 : a.dataset.rank - b.dataset.rank;
    },
    score: function (a, b) {
      var x = a.dataset.score === '' ? 2 : +a.dataset.score;
      var y = b.dataset.score === '' ? 2 : +b.dataset.score;
      return x - y || a.dataset.rank - b.dataset.rank;
    }
  };
  function apply(remember) {
    var shown = 0;
    cards.forEach(function (c) {
      var on = (f.status.value === 'all' || c.dataset.status === f.status.value) &&
               (f.verdict.value === 'all' || c.dataset.verdict === f.verdict.value);
      c.hidden = !on;
      if (on) { shown += 1; }
    });
    cards.slice().sort(order[f.sort.value] || order.suspicion)
      .forEach(function (c) { box.appendChild(c); });
    document.getElementById('shown').textContent =
      shown + ' of ' + cards.length + ' videos shown';
    if (remember && window.history && history.replaceState) {
      history.replaceState(null, '', '#status=' + f.status.value + '&verdict=' +
        f.verdict.value + '&sort=' + f.sort.value);
    }
  }
  location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var p = kv.split('='), el = f[p[0]];
    if (el && Array.prototype.some.call(el.options, function (o) { return o.value === p[1]; })) {
      el.value = p[1];
    }
  });
  Object.keys(f).forEach(function (k) {
    f[k].addEventListener('change', function () { apply(true); });
  });
  apply(false);
  document.body.dataset.ready = '1';
})();
"""


def _videos(n: int) -> str:
    return f"{n} video" if n == 1 else f"{n} videos"


def render(details: Path, source: str | Path | None = None) -> tuple[str, str]:
    """The report's HTML for the details file ``details``, and a one-line summary.
    ``source`` is what the page names as the results' file (default: ``details``; a scan
    whose details lived in a scratch file names its CSV)."""
    videos = rank(read_details(details))
    styles: list[str] = []
    cards = "".join(_card(details, v, styles) for v in videos)
    statuses = Counter(v.detail.get("status") for v in videos)
    verdicts = Counter(v.verdict for v in videos)
    models = sorted({v.detail["model"] for v in videos if v.detail.get("model")})
    status_options = [("all", "all")] + [(s, s) for s in STATUSES if statuses[s]]
    verdict_options = [("all", "all")] + [
        (k, "not scored" if k == UNSCORED else k) for k in ("FAKE", "REAL", UNSCORED) if verdicts[k]
    ]
    sort_options = [
        ("suspicion", "most suspicious first"),
        ("score", "lowest score first"),
        ("path", "path"),
    ]
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = (
        f"{_videos(len(videos))} from {escape(str(details if source is None else source))}"
        + (f" · model {escape(', '.join(models))}" if models else "")
        + f" · made {made}"
    )
    legend = (
        "Each scored person's face crops (what the model saw), in frame order. The orange bar "
        f"under each crop shows <b>{ATTENTION_LABEL}</b> (its attention weight, the number above "
        "the frame index; the weights of a clip sum to 1, the dashed line marks equal weight). "
        "It is not a map of where a fake was found. Faded crops: the face was not detected in "
        "that frame and the nearest frame's box was used."
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>dfscan report: {_videos(len(videos))}</title>"
        f"<style>{_STYLE}{''.join(styles)}</style></head><body>"
        f'<h1>dfscan report</h1><p class="sub">{sub}</p>{_summary(videos)}'
        '<div id="controls">'
        + _select("status", "Status", status_options)
        + _select("verdict", "Verdict", verdict_options)
        + _select("sort", "Order", sort_options)
        + f'<span id="shown">{len(videos)} of {len(videos)} videos shown</span></div>'
        f'<p class="legend">{legend}</p>'
        f'<main id="cards">{cards}</main>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
    summary = _videos(len(videos))
    if videos:
        summary += (
            " ("
            + ", ".join(f"{s} {statuses[s]}" for s in STATUSES if statuses[s])
            + "): "
            + ", ".join(
                f"{'not scored' if k == UNSCORED else k} {verdicts[k]}"
                for k in ("FAKE", "REAL", UNSCORED)
                if verdicts[k]
            )
        )
    return page, summary


def write_report(details: Path, out: Path, source: str | Path | None = None) -> str:
    """Write the report of ``details`` to ``out`` (replacing it); returns a summary line.
    ``source``: as ``render`` takes it."""
    page, summary = render(details, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        tmp.write_text(page, encoding="utf-8", errors="replace")  # a file name not UTF-8: "?"
    return summary
