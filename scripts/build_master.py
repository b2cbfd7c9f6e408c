"""Write data/master/securities.csv, the offline security master, from the pinned pytickersymbols package.

pytickersymbols (MIT, https://github.com/portfolioplus/pytickersymbols) ships the constituents of 20 indices
(S&P 500/600/100, NASDAQ 100, Dow Jones, DAX, FTSE 100, CAC 40, Nikkei 225, ...) with names and symbols. Each
company becomes one row: its US listing (NYSE or NASDAQ) where it has one, since US news writes those tickers
(Sony: SONY, not 6758.T), else the package's own symbol; exchange "US" for a US company (by its ISIN) whose
listing the package does not name, else the market of the package's Yahoo symbol (MRK.DE: DE), else blank (an
unknown market, which link does not discount). The package carries no dates: every row is open-ended.
data/master/supplement.csv (ours, hand-written) adds the demo's companies the package lacks and the renames and
reused tickers we know the dates of; link reads both (params link.master_files).

Run: python -m scripts.build_master [--check]   (deterministic; --check fails when the file is out of date)
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data/master/securities.csv"
PACKAGE_VERSION = "1.17.10"  # pinned in requirements.txt: the same master on every machine
US_EXCHANGES = ("NYSE", "NASDAQ")
COLUMNS = ["symbol", "name", "aliases", "exchange", "country", "valid_from", "valid_to", "security_id"]


def us_listing(company: dict) -> tuple[str, str] | None:
    """(exchange, ticker) of the company's NYSE or NASDAQ listing, where the package lists one."""
    for exchange in US_EXCHANGES:
        for listing in company.get("symbols") or []:
            prefix, _, ticker = (listing.get("google") or "").partition(":")
            if prefix == exchange and ticker:
                return exchange, ticker.upper()
    return None


def master_rows(companies: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """One row per symbol (a symbol two companies claim keeps the first by name), and counts of what was left out."""
    rows: dict[str, dict] = {}
    skipped = {"no_symbol": 0, "symbol_taken": 0}
    for company in sorted(companies, key=lambda c: (c["name"], c.get("symbol") or "")):
        listing = us_listing(company)
        exchange, symbol = listing if listing else (None, company.get("symbol"))
        if not symbol:
            skipped["no_symbol"] += 1
            continue
        if exchange is None and any(isin.startswith("US") for isin in company.get("isins") or []):
            exchange = "US"  # a US company whose listing the package does not name
        elif exchange is None and "." in symbol:
            exchange = symbol.rsplit(".", 1)[1]  # the market of a Yahoo symbol: DE (Xetra), T (Tokyo), L (London)
        if symbol in rows:
            skipped["symbol_taken"] += 1
            continue
        country = company.get("country") or None
        rows[symbol] = {
            "symbol": symbol,
            "name": company["name"],
            "aliases": "",
            "exchange": exchange or "",
            "country": country if country and "," not in country else "",  # some give a city, not a country
            "valid_from": "",
            "valid_to": "",
            "security_id": "",
        }
    return [rows[s] for s in sorted(rows)], skipped


def render(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when data/master/securities.csv is out of date")
    args = parser.parse_args(argv)
    if version("pytickersymbols") != PACKAGE_VERSION:
        print(f"pytickersymbols {version('pytickersymbols')} installed, {PACKAGE_VERSION} pinned", file=sys.stderr)
        return 1
    from pytickersymbols import PyTickerSymbols

    rows, skipped = master_rows(list(PyTickerSymbols().get_all_stocks()))
    text = render(rows)
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python -m scripts.build_master", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} securities to {OUT.relative_to(ROOT)}; left out {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
