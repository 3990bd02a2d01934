"""python -m voipwatch"""
from voipwatch.cli import main

main()
