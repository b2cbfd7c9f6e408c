"""Write the embedded sample: ~1,500 synthetic financial headlines (2010-2020) and their gold spans.

The headlines are written by us from templates and a list of real listed companies; nothing is copied
from a news source. Outputs:
  data/sample/headlines.csv      date,text,symbol     (what the pipeline reads; symbol: the first company's, as
                                                       FNSPID's Stock_symbol gives one per headline)
  data/sample/reviewer_labels.jsonl  text, date, spans   (the demo's stand-in for human reviewers)
  data/sample/symbol_gold.jsonl  text, date, mentions  (each company mention's symbol as of the headline's date)
Run: python -m scripts.make_sample_headlines  (deterministic: same seed, same files)
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240601
TARGET = 1500

# name, ticker, short name used in running text
COMPANIES = [
    ("Apple", "AAPL", "Apple"),
    ("Microsoft", "MSFT", "Microsoft"),
    ("Amazon", "AMZN", "Amazon"),
    ("Alphabet", "GOOGL", "Google"),
    ("Meta Platforms", "META", "Facebook"),
    ("Tesla", "TSLA", "Tesla"),
    ("Nvidia", "NVDA", "Nvidia"),
    ("Intel", "INTC", "Intel"),
    ("Advanced Micro Devices", "AMD", "AMD"),
    ("Netflix", "NFLX", "Netflix"),
    ("Oracle", "ORCL", "Oracle"),
    ("Cisco Systems", "CSCO", "Cisco"),
    ("IBM", "IBM", "IBM"),
    ("Qualcomm", "QCOM", "Qualcomm"),
    ("Salesforce", "CRM", "Salesforce"),
    ("Adobe", "ADBE", "Adobe"),
    ("PayPal", "PYPL", "PayPal"),
    ("Visa", "V", "Visa"),
    ("Mastercard", "MA", "Mastercard"),
    ("JPMorgan Chase", "JPM", "JPMorgan"),
    ("Goldman Sachs", "GS", "Goldman Sachs"),
    ("Morgan Stanley", "MS", "Morgan Stanley"),
    ("Bank of America", "BAC", "Bank of America"),
    ("Wells Fargo", "WFC", "Wells Fargo"),
    ("Citigroup", "C", "Citigroup"),
    ("Berkshire Hathaway", "BRK.B", "Berkshire"),
    ("Walmart", "WMT", "Walmart"),
    ("Target", "TGT", "Target"),
    ("Costco", "COST", "Costco"),
    ("Home Depot", "HD", "Home Depot"),
    ("Best Buy", "BBY", "Best Buy"),
    ("Gap", "GPS", "Gap"),
    ("Nike", "NKE", "Nike"),
    ("Starbucks", "SBUX", "Starbucks"),
    ("McDonald's", "MCD", "McDonald's"),
    ("Coca-Cola", "KO", "Coca-Cola"),
    ("PepsiCo", "PEP", "PepsiCo"),
    ("Procter & Gamble", "PG", "P&G"),
    ("Johnson & Johnson", "JNJ", "Johnson & Johnson"),
    ("Pfizer", "PFE", "Pfizer"),
    ("Merck", "MRK", "Merck"),
    ("AbbVie", "ABBV", "AbbVie"),
    ("Gilead Sciences", "GILD", "Gilead"),
    ("Amgen", "AMGN", "Amgen"),
    ("Moderna", "MRNA", "Moderna"),
    ("Exxon Mobil", "XOM", "Exxon"),
    ("Chevron", "CVX", "Chevron"),
    ("Royal Dutch Shell", "RDS.A", "Shell"),
    ("BP", "BP", "BP"),
    ("ConocoPhillips", "COP", "ConocoPhillips"),
    ("Boeing", "BA", "Boeing"),
    ("Lockheed Martin", "LMT", "Lockheed"),
    ("General Electric", "GE", "GE"),
    ("Caterpillar", "CAT", "Caterpillar"),
    ("3M", "MMM", "3M"),
    ("Honeywell", "HON", "Honeywell"),
    ("Ford Motor", "F", "Ford"),
    ("General Motors", "GM", "GM"),
    ("Delta Air Lines", "DAL", "Delta"),
    ("United Airlines", "UAL", "United Airlines"),
    ("American Airlines", "AAL", "American Airlines"),
    ("FedEx", "FDX", "FedEx"),
    ("UPS", "UPS", "UPS"),
    ("Walt Disney", "DIS", "Disney"),
    ("Comcast", "CMCSA", "Comcast"),
    ("Verizon", "VZ", "Verizon"),
    ("AT&T", "T", "AT&T"),
    ("T-Mobile", "TMUS", "T-Mobile"),
    ("Sprint", "S", "Sprint"),
    ("Twitter", "TWTR", "Twitter"),
    ("Snap", "SNAP", "Snap"),
    ("Square", "SQ", "Square"),
    ("Uber", "UBER", "Uber"),
    ("Lyft", "LYFT", "Lyft"),
    ("Zoom Video", "ZM", "Zoom"),
    ("Shopify", "SHOP", "Shopify"),
    ("Alibaba", "BABA", "Alibaba"),
    ("Baidu", "BIDU", "Baidu"),
    ("Sony", "SNE", "Sony"),
    ("Toyota", "TM", "Toyota"),
    ("Micron Technology", "MU", "Micron"),
    ("Texas Instruments", "TXN", "Texas Instruments"),
    ("Broadcom", "AVGO", "Broadcom"),
    ("Dollar General", "DG", "Dollar General"),
    ("Kroger", "KR", "Kroger"),
    ("CVS Health", "CVS", "CVS"),
    ("UnitedHealth", "UNH", "UnitedHealth"),
    ("Dun & Bradstreet", "DNB", "Dun & Bradstreet"),
    ("Black Diamond", "BDE", "Black Diamond"),
    ("Under Armour", "UA", "Under Armour"),
    ("Chipotle", "CMG", "Chipotle"),
    ("Yelp", "YELP", "Yelp"),
    ("Groupon", "GRPN", "Groupon"),
    ("BlackBerry", "BBRY", "BlackBerry"),
    ("Nokia", "NOK", "Nokia"),
    ("Ericsson", "ERIC", "Ericsson"),
    ("Hewlett-Packard", "HPQ", "HP"),
    ("Dell", "DELL", "Dell"),
    ("eBay", "EBAY", "eBay"),
    ("Expedia", "EXPE", "Expedia"),
    ("Marriott", "MAR", "Marriott"),
    ("Las Vegas Sands", "LVS", "Las Vegas Sands"),
    ("Carnival", "CCL", "Carnival"),
    ("Harley-Davidson", "HOG", "Harley-Davidson"),
    ("Hershey", "HSY", "Hershey"),
    ("Kellogg", "K", "Kellogg"),
    ("General Mills", "GIS", "General Mills"),
    ("Tyson Foods", "TSN", "Tyson"),
    ("Monster Beverage", "MNST", "Monster"),
]

INDICES = ["Dow Jones", "S&P 500", "Nasdaq", "CAC 40", "FTSE 100", "DAX", "Nikkei", "Russell 2000", "Dow"]

# {C}/{D} company mentions, {T}/{U} tickers of the same companies, {I} an index; {N} a number; {M} a month.
ONE_COMPANY = [
    "{C} Shares Up {N}% After Earnings Beat",
    "{C} Stock Slides After CEO Tweet",
    "{C} Reports Q{Q} EPS ${P}, Revenue Beats Estimates",
    "{C} ({T}) Raises Full-Year Guidance",
    "Analyst Upgrades {C} To Buy, Price Target ${P}",
    "{C}'s CEO To Step Down At Year End",
    "Why {C} Is Trading Higher Today",
    "{C} Announces ${N}B Share Buyback",
    "Options Traders Bet On {C} Ahead Of Earnings",
    "{C} Hit With Lawsuit Over Data Privacy",
    "Is {C} A Buy After The Selloff?",
    "{T} Shares Halted On News Pending",
    "Earnings Preview: What To Expect From {C} ({T})",
    "{C} Cuts {N},000 Jobs In Restructuring",
    "{C}'s New Product Launch Draws Mixed Reviews",
    "Unusual Options Activity In {T}",
    "{C} Declares Quarterly Dividend Of ${P} Per Share",
    "Short Interest In {C} Rises {N}%",
    "{C} Misses Estimates; Stock Slides In After-Hours Trading",
    "{T}: What Comes Next After The Rally",
    "Mid-Day Movers: {C} Leads Gains",
    "{C} Says Supply Chain Issues Are Easing",
]
TWO_COMPANIES = [
    "{C} Acquires {D} For ${N}M",
    "{C} And {D} Announce Strategic Partnership",
    "{C} Sues {D} Over Patent Infringement",
    "{C} vs. {D}: Which Stock Is The Better Buy?",
    "{T}, {U} Lead Tech Rally",
    "{C} ({T}) Drops As {D} ({U}) Gains Market Share",
    "{C} In Talks To Buy Stake In {D}",
    "Why {C} and {D} Are Moving Today",
    "{C} Poaches Executive From {D}",
]
THREE_COMPANIES = [
    "{T}, {U} And {V} Report Earnings This Week",
    "{C}, {D} And {E} Among Top Gainers",
    "Tech Giants {C}, {D}, {E} Face New Antitrust Probe",
]
INDEX_TEMPLATES = [
    "{I} Falls {N} Points As Trade Fears Mount",
    "{I} Closes At Record High",
    "Stocks Mixed; {I} Edges Lower",
    "{C} Drags {I} Lower",
    "{C} Leads {I} Higher After Strong Results",
    "Futures Point To Higher Open For {I}",
    "{I} Futures Slip Ahead Of Jobs Report",
]
NO_COMPANY = [
    "Top Analyst Price Target Moves For {W}",
    "Traders' Picks For {M} {DAY}",
    "Mid-Day Market Update: Crude Oil Up {N}%",
    "New Platform Lets Retail Traders Use Leverage On Crypto",
    "Gold Prices Rise As Dollar Weakens",
    "Fed Holds Rates Steady, Signals Patience",
    "Jobless Claims Fall To {N}-Year Low",
    "Benzinga's Top Upgrades And Downgrades For {M} {DAY}",
    "Healthcare Stocks Moving In {W}'s Pre-Market Session",
    "Industrial Stocks Moving Higher",
    "Earnings Scheduled For {M} {DAY}",
    "Treasury Yields Climb To {N}-Month High",
    "Oil Slides As OPEC Output Rises",
    "Consumer Confidence Beats Expectations In {M}",
    "Housing Starts Drop {N}% In {M}",
    "Bitcoin Tops ${N},000 For First Time",
    "5 Stocks To Watch This Week",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
SLOT = re.compile(r"\{([A-Z]+)\}")
# The tickers above that changed within or after the demo's years: (first day, last day, symbol then); a day in
# none of the periods had no listed security of that company (Sprint after its merger, D&B while private).
TICKER_HISTORY = {
    "META": [(None, dt.date(2022, 6, 8), "FB"), (dt.date(2022, 6, 9), None, "META")],
    "BBRY": [(None, dt.date(2017, 10, 15), "BBRY"), (dt.date(2017, 10, 16), None, "BB")],
    "SNE": [(None, dt.date(2021, 3, 31), "SNE"), (dt.date(2021, 4, 1), None, "SONY")],
    "RDS.A": [(None, dt.date(2022, 1, 28), "RDS.A"), (dt.date(2022, 1, 31), None, "SHEL")],
    "S": [(None, dt.date(2020, 3, 31), "S")],
    "DNB": [(None, dt.date(2019, 2, 7), "DNB"), (dt.date(2020, 7, 1), None, "DNB")],
}


def symbol_on(ticker: str, day: dt.date) -> str | None:
    """The symbol the company of `ticker` traded under on `day` (None: it was not listed then)."""
    periods = TICKER_HISTORY.get(ticker)
    if periods is None:
        return ticker
    return next(
        (sym for start, end, sym in periods if (start is None or start <= day) and (end is None or day <= end)), None
    )


def render(template: str, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """Fill a template; return the text and the character spans of company mentions and tickers, each with the
    company's ticker."""
    picks = rng.sample(COMPANIES, 3)
    companies = {"C": picks[0], "D": picks[1], "E": picks[2]}
    ticker_of = {"T": picks[0], "U": picks[1], "V": picks[2]}
    text, spans, pos = "", [], 0
    for match in SLOT.finditer(template):
        text += template[pos : match.start()]
        slot = match.group(1)
        if slot in companies:
            name, ticker, short = companies[slot]
            value, is_entity = rng.choice([name, short, short]), True
        elif slot in ticker_of:
            ticker = ticker_of[slot][1]
            value, is_entity = ticker, True
        else:
            value, is_entity = (
                {
                    "I": lambda: rng.choice(INDICES),
                    "N": lambda: str(rng.randint(2, 95)),
                    "P": lambda: f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}",
                    "Q": lambda: str(rng.randint(1, 4)),
                    "W": lambda: rng.choice(WEEKDAYS),
                    "M": lambda: rng.choice(MONTHS),
                    "DAY": lambda: str(rng.randint(1, 28)),
                }[slot](),
                False,
            )
        if is_entity:
            spans.append((len(text), len(text) + len(value), ticker))
        text += value
        pos = match.end()
    text += template[pos:]
    return text, spans


def restyle(text: str, rng: random.Random) -> str:
    """Casing variants seen in real feeds: most headlines title case, some all caps or lower case."""
    roll = rng.random()
    if roll < 0.06:
        return text.upper()
    if roll < 0.12:
        return text.lower()
    return text


def random_date(rng: random.Random) -> str:
    start = dt.date(2010, 1, 1)
    return (start + dt.timedelta(days=rng.randrange((dt.date(2020, 12, 31) - start).days + 1))).isoformat()


def generate(seed: int = SEED, target: int = TARGET) -> list[dict]:
    rng = random.Random(seed)
    families = [
        (ONE_COMPANY, 0.42),
        (TWO_COMPANIES, 0.16),
        (THREE_COMPANIES, 0.05),
        (INDEX_TEMPLATES, 0.12),
        (NO_COMPANY, 0.25),
    ]
    seen, rows = set(), []
    while len(rows) < target:
        templates = rng.choices([f for f, _ in families], weights=[w for _, w in families])[0]
        text, spans = render(rng.choice(templates), rng)
        text = restyle(text, rng)  # casing changes keep character offsets
        if text in seen:
            continue
        seen.add(text)
        date = random_date(rng)
        day = dt.date.fromisoformat(date)
        rows.append(
            {
                "date": date,
                "text": text,
                "spans": [{"start": s, "end": e, "text": text[s:e]} for s, e, _ in spans],
                "mentions": [{"start": s, "end": e, "symbol": symbol_on(t, day)} for s, e, t in spans],
            }
        )
    return sorted(rows, key=lambda r: (r["date"], r["text"]))


def main() -> None:
    rows = generate()
    with open(ROOT / "data/sample/headlines.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["date", "text", "symbol"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {
                "date": r["date"],
                "text": r["text"],
                "symbol": next((m["symbol"] for m in r["mentions"] if m["symbol"]), ""),
            }
            for r in rows
        )
    with open(ROOT / "data/sample/reviewer_labels.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("date", "spans", "text")}, ensure_ascii=False, sort_keys=True) + "\n")
    with open(ROOT / "data/sample/symbol_gold.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            if r["mentions"]:
                f.write(
                    json.dumps({k: r[k] for k in ("date", "mentions", "text")}, ensure_ascii=False, sort_keys=True)
                    + "\n"
                )
    print(f"wrote {len(rows)} headlines, {sum(len(r['spans']) for r in rows)} gold spans")


if __name__ == "__main__":
    main()
