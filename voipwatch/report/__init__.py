"""`voipwatch report`: one self-contained HTML page of an analysis.

data     the report's input (an output directory or an in-memory analysis) and each section's data
figures  every figure, drawn with matplotlib and returned as PNG bytes to embed
html     the page: sections laid out, values escaped, figures inline
guide    the NSA guide's parts and advice for each check
"""
