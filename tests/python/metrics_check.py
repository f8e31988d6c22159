"""Fetches a noid server's /metrics and parses it with the Prometheus client's own parser
(which refuses text that breaks the exposition format).

Usage: metrics_check.py URL [TOKEN]
Prints {"status": HTTP status, "types": {family: type}, "samples": [[name, labels, value]]};
exits 1 if the text does not parse.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

url = sys.argv[1]
headers = {"authorization": "Bearer " + sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "types": {}, "samples": []}))
    sys.exit(0)

types, samples = {}, []
for family in text_string_to_metric_families(text):
    types[family.name] = family.type
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"status": status, "types": types, "samples": samples}))
