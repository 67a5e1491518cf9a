"""The look of ``shadow report``: its stylesheet and the plotly options of every chart."""

from __future__ import annotations

from typing import Final

__all__ = ["CSS", "PLOTLY_CONFIG"]

PLOTLY_CONFIG: Final = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
"""The plotly.js config of each chart: no logo, no lasso or box select."""

CSS: Final = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f4f6f8;--card:#fff;
--bad:#b42318;--bad-bg:#fdecea;--good:#1e7b34;--good-bg:#e6f4ea;--grey:#52606d;--grey-bg:#eef1f4}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.banner{padding:28px max(32px,calc((100% - 1240px)/2));color:#fff}
.banner.pass{background:#1e7b34}.banner.fail{background:#b42318}.banner.none{background:#52606d}
.banner h1{margin:4px 0 6px;font-size:28px;line-height:1.2}
.banner p{margin:0;opacity:.95}.banner ul{margin:10px 0 0;padding-left:20px}
.banner li{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:12px;opacity:.85}
main{max-width:1304px;margin:0 auto;padding:8px 32px 40px}
nav{display:flex;flex-wrap:wrap;gap:4px;margin:16px 0 4px}
nav a{color:var(--grey);text-decoration:none;padding:4px 10px;border-radius:999px;
background:var(--card);border:1px solid var(--line);font-size:13px}
nav a:hover{color:var(--fg);border-color:#9aa5b1}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:20px 24px;margin:16px 0}
h2{font-size:19px;margin:0 0 2px}h3{font-size:15px;margin:20px 0 6px}
.lead{color:var(--muted);margin:0 0 14px;max-width:900px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
font-weight:600;border-bottom:2px solid var(--line)}
th,td{padding:7px 12px;text-align:right;white-space:nowrap}
td{border-bottom:1px solid var(--line)}
th:first-child,td:first-child,th:last-child{text-align:left}
td:first-child{font-weight:600}
td.worse{background:var(--bad-bg);color:var(--bad);font-weight:600}
td.better{background:var(--good-bg);color:var(--good);font-weight:600}
td.same{color:var(--grey)}td.none{color:var(--muted)}
td.soft-worse{color:var(--bad)}td.soft-better{color:var(--good)}
td:last-child{text-align:left;white-space:normal}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:10px 24px;
margin:18px 0 0;padding:14px 16px;background:var(--grey-bg);border-radius:8px}
.facts dt{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
.arm{white-space:nowrap;margin-right:10px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:960px){.grid2{grid-template-columns:1fr}}
.chart{margin:6px 0 14px}
.nodata{color:var(--muted);background:var(--grey-bg);border-radius:8px;padding:26px;
text-align:center;margin:6px 0 14px}
details{margin-top:8px}summary{cursor:pointer;color:var(--grey);font-weight:600}
.example{border:1px solid var(--line);border-radius:8px;margin:12px 0;overflow:hidden}
.example header{display:flex;gap:16px;align-items:baseline;padding:8px 12px;
background:var(--grey-bg);font-size:13px}
.example .trace{font-weight:700;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.example .slices{color:var(--muted);flex:1}.example .score{font-weight:700;color:var(--bad)}
.pair{display:grid;grid-template-columns:1fr 1fr}.pair>div{min-width:0}
.pair>div+div{border-left:1px solid var(--line)}
.pair h4{margin:0;padding:8px 12px 0;font-size:12px;color:var(--muted);text-transform:uppercase}
.pair pre{margin:0;padding:8px 12px 12px;white-space:pre-wrap;overflow-wrap:anywhere;
max-height:320px;overflow:auto;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.pair pre.missing{color:var(--muted)}.cut{padding:0 12px 8px;color:var(--muted);font-size:12px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""
