"""The params of the link stage (params.yaml `link`), beside the code that reads them: an edit here reruns link
only, not every stage that reads core's params models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.core.params import Fraction, Section


class LinkWeights(Section):
    ticker: float = Fraction  # "(SYM)" after the mention, or the mention written as a symbol
    alias: float = Fraction  # the mention's name form is a master name or alias
    name: float = Fraction  # the teacher's normalised name or the mention's cluster name is one
    prefix: float = Fraction  # the mention's name form is the first words of a master name
    fuzzy: float = Fraction  # times the fuzzy score / 100


class FuzzyMatch(Section):
    scorer: Literal["ratio", "token_sort_ratio", "WRatio"]  # rapidfuzz scorers
    threshold: float = Field(ge=0, le=100)


class AliasProposals(Section):
    min_count: int = Field(ge=1)  # headlines where the name and the symbol meet
    min_precision: float = Fraction  # of the name's headlines with a symbol, the share with this one


class Markets(Section):
    exchanges: list[str]  # the feed's home markets
    other_discount: float = Fraction  # weight cut for a security listed elsewhere


class LinkerParams(Section):
    """How a mention is linked: what a served student bundles with its master (the export writes it)."""

    weights: LinkWeights
    fuzzy: FuzzyMatch
    markets: Markets
    min_score: float = Fraction  # a best candidate below this links nothing
    ambiguity_margin: float = Fraction  # a second security within this of the best: unlinked
    top_candidates: int = Field(ge=1, le=10)
    not_tickers: list[str]  # words in capitals that are no ticker unless written "(SYM)" after a name


class LinkParams(Section):
    SECTION = "link"
    master_files: list[str] = Field(min_length=1)  # read in order: a later file's rows of a security id replace earlier
    accepted_aliases: str | None  # the reviewed alias file; null: none
    gold_file: str | None  # JSONL {text, date, mentions: [{start, end, symbol}]}: link accuracy; null: not measured
    symbol_column: str | None  # the feed's own symbol per headline (fetch.keep_columns), e.g. Stock_symbol
    linker: LinkerParams
    aliases: AliasProposals
    watch_top_names: int = Field(ge=1)  # names listed per month in the watch
    watch_queue_size: int = Field(ge=1)  # flagged headlines kept for review, most urgent first
