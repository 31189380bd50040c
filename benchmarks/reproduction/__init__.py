"""The reproduction driver's parts: `grid` (cells, running them), `claims` (the papers' claims
against the records), `report` and `power_report` (the Markdown reports and their plots).
`benchmarks/reproduce.py` is its command line."""
