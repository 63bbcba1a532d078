"""The report page's inline style sheet (no web font, no CDN; light and dark)."""

CSS = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a;
  --border: #d0d7de; --code: #f6f8fa; --holds: #1a7f37; --fails: #cf222e; --undet: #6e7781;
  --consistent: #9a6700;
  --alert-bg: #ffebe9; --alert-border: #cf222e; --note-bg: #f6f8fa; --link: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #8d96a0; --border: #30363d; --code: #161b22;
    --holds: #2ea043; --fails: #f85149; --undet: #6e7681; --consistent: #d29922;
    --alert-bg: #3a1a1c;
    --alert-border: #f85149; --note-bg: #161b22; --link: #4493f8; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 1.5rem; color: var(--fg);
  background: var(--bg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; }
a { color: var(--link); }
h1 { margin-top: 0; font-size: 1.8rem; }
h2 { border-bottom: 1px solid var(--border); padding-bottom: .3rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; }
.muted { color: var(--muted); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: .8rem 0; width: 100%; font-size: .92rem; }
.table-wrap { overflow-x: auto; }
th, td { border: 1px solid var(--border); padding: .35rem .6rem; text-align: left;
  vertical-align: top; }
th { background: var(--code); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: var(--code); border: 1px solid var(--border); border-radius: 6px;
  padding: .7rem; overflow-x: auto; font-size: .85rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.badge { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; color: #fff;
  font-size: .8rem; font-weight: 600; white-space: nowrap; }
.badge.holds { background: var(--holds); } .badge.fails { background: var(--fails); }
.badge.undetermined { background: var(--undet); }
.badge.consistent { background: var(--consistent); }
.badge.status-failed { background: var(--fails); }
.badge.status-skipped { background: var(--undet); }
.badge.status-ok { background: var(--holds); }
.alert { background: var(--alert-bg); border: 2px solid var(--alert-border); border-radius: 6px;
  padding: .7rem 1rem; margin: 1rem 0; }
.alert pre { background: transparent; border: 0; padding: 0; white-space: pre-wrap; }
.note { background: var(--note-bg); border: 1px solid var(--border); border-radius: 6px;
  padding: .6rem 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto;
  background: #fff; border: 1px solid var(--border); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .3rem; }
details summary { cursor: pointer; font-weight: 600; }
nav.toc ul { padding-left: 1.2rem; }
.badge.status-diverged { background: #9a6700; }
tr.run-diverged td { background: color-mix(in srgb, #d4a72c 18%, transparent); }
tr.run-failed td { background: color-mix(in srgb, var(--fails) 14%, transparent); }
"""
