"""The default `[dialplan] high_risk` list: destinations that international revenue share fraud (IRSF) targets.

A site replaces the whole list with its own `[dialplan] high_risk` (its carrier's fraud list, say); an empty
list turns the class off. Patterns match the dialled number after access codes are stripped, in any of the
international forms: "+" (ITU-T E.164 §5.1), "00" (the ITU-T E.164 recommended international prefix) and
"011" (NANP). Sources:
- ITU-T E.164 assigned codes (ITU Operational Bulletin list of E.164 country codes): +870 Inmarsat single
  network access code, +881 Global Mobile Satellite System, +882 and +883 International Networks, +979
  International Premium Rate Service. These ranges have no country's regulator behind them and are sold
  as international premium rate numbers (IPRN) in revenue share offers.
- The destinations that Commsrisk's "What Is New with IRSF Fraud?" (https://commsrisk.com/what-is-new-with-irsf-fraud/)
  names as the usual top-10 terminating IPRN destinations before 2018: Cuba +53, Latvia +371, Lithuania
  +370, Somalia +252. The same article warns that since 2018 advertised IRSF ranges spread to countries
  once seen as low risk, so a fixed list is a floor: feed a current list (CFCA, GSMA, your carrier) in.
"""
from __future__ import annotations

INTERNATIONAL_FORMS = r"(?:\+|00|011)"
NETWORK_CODES = ("870", "881", "882", "883", "979")       # ITU-T E.164 non-geographic codes (see above)
IRSF_COUNTRY_CODES = ("53", "252", "370", "371")          # Cuba, Somalia, Lithuania, Latvia (Commsrisk)

HIGH_RISK_DEFAULT: tuple[str, ...] = (
    rf"^{INTERNATIONAL_FORMS}(?:{'|'.join(NETWORK_CODES)})",
    rf"^{INTERNATIONAL_FORMS}(?:{'|'.join(IRSF_COUNTRY_CODES)})",
)
