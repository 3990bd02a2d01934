"""`voipwatch report`: the data of a report, its figures and the self-contained HTML page."""
