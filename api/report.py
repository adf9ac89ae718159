"""An enterprise's periodic carbon report (``/api/v1/enterprises/{code}/report``), as CSV or a printable page.

The plans require key energy-using enterprises to publish their energy and carbon figures; this
report gives them per period (month, quarter or the year) and per carrier for the year, with the
accounting core's result for the year (``rules.account`` on the metered annual quantities): both
energy totals, both CO2 methods, every factor with its value, data year and source document,
the method version and the factor set, and the data completeness behind the figures.
"""

from __future__ import annotations

import csv
import html
import io
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from carbonwatch.accounting.rules import AccountingError, Activity, MeasuredFuel, account

from .auth import CallerDep
from .deps import Conn
from .energy import energy
from .routes import ENTERPRISE_CODE, enterprise_or_404
from .windows import BEIJING

router = APIRouter()

TEXT = {
    "zh": {
        "title": "企业碳排放报告",
        "enterprise": "企业",
        "code": "统一社会信用代码",
        "region": "行政区划",
        "industry": "行业（GB/T 4754）",
        "year": "核算年度",
        "period": "期间",
        "tce": "综合能耗 (tce)",
        "tce_dual": "双控能耗 (tce)",
        "co2_loc": "CO2 基于位置 (t)",
        "co2_mkt": "CO2 基于市场 (t)",
        "carrier": "能源品种",
        "direction": "方向",
        "quantity": "用量",
        "unit": "单位",
        "factor": "排放因子",
        "factor_source": "因子来源",
        "data_year": "数据年份",
        "tce_factor": "折标系数",
        "total": "合计",
        "completeness": "数据完整率（15 分钟值）",
        "method": "核算方法版本",
        "factor_set": "因子集",
        "generated": "生成时间",
        "by_period": "分期间",
        "by_carrier": "分能源品种（全年）",
        "notes": "说明",
        "note_market": "基于市场的排放：外购电力按全国剩余电网因子（不含市场化交易非化石电力）计；未计量绿证。",
        "note_boundary": "外购计入、外输扣除；自发电与分表计量单独列示不重复计入。",
    },
    "en": {
        "title": "Enterprise carbon report",
        "enterprise": "Enterprise",
        "code": "Unified social credit code",
        "region": "Region",
        "industry": "Industry (GB/T 4754)",
        "year": "Accounting year",
        "period": "Period",
        "tce": "Energy (tce)",
        "tce_dual": "Dual-control energy (tce)",
        "co2_loc": "CO2 location-based (t)",
        "co2_mkt": "CO2 market-based (t)",
        "carrier": "Carrier",
        "direction": "Direction",
        "quantity": "Quantity",
        "unit": "Unit",
        "factor": "CO2 factor",
        "factor_source": "Factor source",
        "data_year": "Data year",
        "tce_factor": "tce factor",
        "total": "Total",
        "completeness": "Data completeness (15-minute values)",
        "method": "Method version",
        "factor_set": "Factor set",
        "generated": "Generated",
        "by_period": "By period",
        "by_carrier": "By carrier (year)",
        "notes": "Notes",
        "note_market": "Market-based: purchased electricity at the national residual factor (excluding market-traded "
        "non-fossil power); no green certificates are metered.",
        "note_boundary": "Imports add, exports subtract; own generation and sub-meters are reported, not added twice.",
    },
}


async def report_data(conn: Conn, who: CallerDep, code: str, year: int, period: str) -> dict:
    """Everything the report shows, from the rollups and the accounting core."""
    who.require_energy()
    ent = await enterprise_or_404(conn, who, code)
    lo = datetime(year, 1, 1, tzinfo=UTC) - BEIJING
    hi = datetime(year + 1, 1, 1, tzinfo=UTC) - BEIJING
    months = await energy(conn, who, "enterprise", "month", lo, hi, {"enterprise": code})
    periods = []
    for j, label in enumerate(months.labels):
        name = (
            label
            if period == "month"
            else f"{year}-Q{(int(label[5:7]) - 1) // 3 + 1}"
            if period == "quarter"
            else str(year)
        )
        if not periods or periods[-1]["period"] != name:
            periods.append(
                {"period": name, "tce": 0.0, "tce_dual_control": 0.0, "co2_location_t": 0.0, "co2_market_t": 0.0}
            )
        p = periods[-1]
        p["tce"] += float(months.tce[0, j])
        p["tce_dual_control"] += float(months.tce_dual_control[0, j])
        p["co2_location_t"] += float(months.co2_location_t[0, j])
        p["co2_market_t"] += float(months.co2_market_t[0, j])
    # points measured differently (their own fuel parameters) are accounted apart
    cur = await conn.execute(
        """SELECT p.carrier, p.unit, p.direction, p.use, p.fuel_ncv, p.fuel_carbon_content, p.fuel_oxidation_rate,
                  p.fuel_source, sum(m.quantity) FROM energy_1mon m
           JOIN points p ON p.id = m.point_id WHERE p.enterprise = %s AND p.carrier IS NOT NULL
           AND p.direction IN ('import', 'export') AND m.bucket >= %s AND m.bucket < %s
           GROUP BY 1, 2, 3, 4, 5, 6, 7, 8""",
        (code, lo, hi),
    )
    activities = [
        Activity(
            carrier=c,
            quantity=q,
            unit=u,
            province=ent["province"],
            direction=d,
            use=use,
            label=f"{c} {d}",
            measured=MeasuredFuel(ncv, cc, of, src) if (ncv, cc, of) != (None, None, None) else None,
        )
        for c, u, d, use, ncv, cc, of, src, q in await cur.fetchall()
    ]
    try:
        result = account(activities, year)
    except AccountingError as exc:
        raise HTTPException(422, str(exc)) from None
    cur = await conn.execute(
        """SELECT sum(c.received), sum(c.expected) FROM cw_completeness(%s, least(%s, now()),
           (SELECT coalesce(array_agg(id), '{}') FROM points WHERE enterprise = %s AND active)) c""",
        (lo, hi, code),
    )
    received, expected = await cur.fetchone()
    return {
        "enterprise": ent,
        "year": year,
        "period": period,
        "periods": periods,
        "account": result.as_dict(),
        "completeness": (received / expected) if expected else None,
        "generated_at": datetime.now(UTC),
    }


def report_csv(data: dict, lang: str) -> str:
    tx = TEXT[lang]
    out = io.StringIO()
    w = csv.writer(out)
    ent, acc = data["enterprise"], data["account"]
    w.writerow([tx["title"]])
    for key, value in (
        ("enterprise", ent["name"]),
        ("code", ent["code"]),
        ("region", ent["region"]),
        ("industry", ent["industry"]),
        ("year", data["year"]),
        ("method", acc["method_version"]),
        ("factor_set", acc["factor_set"]),
        ("completeness", "" if data["completeness"] is None else f"{data['completeness']:.4f}"),
        ("generated", data["generated_at"].isoformat()),
    ):
        w.writerow([tx[key], value])
    w.writerow([])
    w.writerow([tx["by_period"]])
    w.writerow([tx["period"], tx["tce"], tx["tce_dual"], tx["co2_loc"], tx["co2_mkt"]])
    for p in data["periods"]:
        w.writerow(
            [p["period"], *(f"{p[k]:.6f}" for k in ("tce", "tce_dual_control", "co2_location_t", "co2_market_t"))]
        )
    w.writerow([])
    w.writerow([tx["by_carrier"]])
    w.writerow(
        [tx["carrier"], tx["direction"], tx["quantity"], tx["unit"], tx["tce"], tx["co2_loc"], tx["co2_mkt"],
         tx["factor"], tx["data_year"], tx["factor_source"], tx["tce_factor"]]
    )  # fmt: skip
    for line in acc["by_carrier"]:
        f = line["factor"] or {}
        w.writerow(
            [line["carrier"], line["direction"], f"{line['quantity']:.6f}", line["unit"], f"{line['tce']:.6f}",
             f"{line['co2_location_t']:.6f}", f"{line['co2_market_t']:.6f}",
             f"{f.get('value', '')} {f.get('unit', '')}".strip(), f.get("data_year", ""),
             f.get("document") or f.get("source", ""), line["tce_factor"]["value"]]
        )  # fmt: skip
    w.writerow(
        [tx["total"], "", "", "", f"{acc['tce']:.6f}", f"{acc['co2_location_t']:.6f}", f"{acc['co2_market_t']:.6f}"]
    )
    w.writerow([tx["tce_dual"], "", "", "", f"{acc['tce_dual_control']:.6f}"])
    return out.getvalue()


def report_html(data: dict, lang: str) -> str:
    tx = TEXT[lang]
    e = html.escape
    ent, acc = data["enterprise"], data["account"]
    name = ent["name"] if lang == "zh" else (ent["name_en"] or ent["name"])

    def n(v: float, digits: int = 3) -> str:
        return f"{v:,.{digits}f}"

    periods = "".join(
        f"<tr><td>{e(p['period'])}</td><td>{n(p['tce'])}</td><td>{n(p['tce_dual_control'])}</td>"
        f"<td>{n(p['co2_location_t'])}</td><td>{n(p['co2_market_t'])}</td></tr>"
        for p in data["periods"]
    )

    def carrier_row(line: dict) -> str:
        f = line["factor"] or {}
        return (
            f"<tr><td>{e(line['chinese'] if lang == 'zh' else line['carrier'])}</td><td>{e(line['direction'])}</td>"
            f"<td>{n(line['quantity'])} {e(line['unit'])}</td><td>{n(line['tce'])}</td>"
            f"<td>{n(line['co2_location_t'])}</td><td>{n(line['co2_market_t'])}</td>"
            f"<td>{e(str(f.get('value', '—')))} {e(f.get('unit', ''))} ({e(str(f.get('data_year', '—')))})<br>"
            f"<small>{e(f.get('document') or f.get('source', ''))}</small></td></tr>"
        )

    carriers = "".join(carrier_row(line) for line in acc["by_carrier"])
    completeness = "—" if data["completeness"] is None else f"{data['completeness'] * 100:.1f}%"
    return f"""<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<title>{e(tx["title"])} · {e(name)} · {data["year"]}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; color: #1f2933; margin: 2rem auto; max-width: 60rem; }}
table {{ border-collapse: collapse; width: 100%; margin: .5rem 0 1.5rem; font-size: .9rem; }}
th, td {{ border: 1px solid #cbd2d9; padding: .3rem .5rem; text-align: left; }}
td:not(:first-child) {{ font-variant-numeric: tabular-nums; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }} dt {{ color: #52606d; }}
.total td {{ font-weight: 700; }} small {{ color: #52606d; }}
@media print {{ body {{ margin: 0; max-width: none; }} @page {{ size: A4; margin: 15mm; }}
  h2 {{ break-after: avoid; }} }}
</style></head><body>
<h1>{e(tx["title"])} · {data["year"]}</h1>
<dl><dt>{e(tx["enterprise"])}</dt><dd>{e(name)}</dd><dt>{e(tx["code"])}</dt><dd>{e(ent["code"])}</dd>
<dt>{e(tx["region"])}</dt><dd>{e(ent["region"])}</dd><dt>{e(tx["industry"])}</dt><dd>{e(ent["industry"])}</dd>
<dt>{e(tx["completeness"])}</dt><dd>{completeness}</dd></dl>
<h2>{e(tx["by_carrier"])}</h2>
<table><thead><tr><th>{e(tx["carrier"])}</th><th>{e(tx["direction"])}</th><th>{e(tx["quantity"])}</th>
<th>{e(tx["tce"])}</th><th>{e(tx["co2_loc"])}</th><th>{e(tx["co2_mkt"])}</th><th>{e(tx["factor"])}</th></tr></thead>
<tbody>{carriers}<tr class="total"><td>{e(tx["total"])}</td><td></td><td></td><td>{n(acc["tce"])}</td>
<td>{n(acc["co2_location_t"])}</td><td>{n(acc["co2_market_t"])}</td><td></td></tr>
<tr><td>{e(tx["tce_dual"])}</td><td></td><td></td><td>{n(acc["tce_dual_control"])}</td><td></td><td></td><td></td></tr>
</tbody></table>
<h2>{e(tx["by_period"])}</h2>
<table><thead><tr><th>{e(tx["period"])}</th><th>{e(tx["tce"])}</th><th>{e(tx["tce_dual"])}</th><th>{e(tx["co2_loc"])}</th>
<th>{e(tx["co2_mkt"])}</th></tr></thead><tbody>{periods}</tbody></table>
<h2>{e(tx["notes"])}</h2><ul><li>{e(tx["note_boundary"])}</li><li>{e(tx["note_market"])}</li></ul>
<p><small>{e(tx["method"])}: {e(acc["method_version"])} · {e(tx["factor_set"])}: {e(acc["factor_set"])} ·
{e(tx["generated"])}: {e(data["generated_at"].strftime("%Y-%m-%d %H:%M UTC"))}</small></p>
</body></html>"""


@router.get(
    "/enterprises/{code}/report",
    tags=["reports"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "text/html": {}}, "description": "the report"}},
)
async def report(
    conn: Conn,
    who: CallerDep,
    code: Annotated[str, ENTERPRISE_CODE],
    year: Annotated[
        int | None, Query(ge=2000, le=2099, description="Beijing calendar year (default: this year)")
    ] = None,
    period: Literal["month", "quarter", "year"] = "month",
    format: Literal["csv", "html"] = "csv",
    lang: Literal["zh", "en"] = "zh",
) -> Response:
    """The enterprise's carbon report for a year: per period and per carrier, with factors and their sources."""
    year = year or (datetime.now(UTC) + BEIJING).year
    data = await report_data(conn, who, code, year, period)
    if format == "html":
        return HTMLResponse(report_html(data, lang))
    filename = f"carbon-report-{code}-{year}.csv"
    # a byte-order mark so spreadsheet programs read the Chinese text as UTF-8
    return Response(
        "\ufeff" + report_csv(data, lang),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
