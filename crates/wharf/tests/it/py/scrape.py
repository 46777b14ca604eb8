"""Scrapes wharf's admin endpoint and parses /metrics with the Prometheus
client library's own text-format parser.

Usage: scrape.py ADDRESS
Prints "healthz CODE BODY" and one line per sample: "NAME{labels} VALUE"
(labels sorted), exiting non-zero if /metrics does not parse."""

import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ADDRESS = sys.argv[1]

try:
    with urllib.request.urlopen(f"http://{ADDRESS}/healthz", timeout=10) as r:
        print(f"healthz {r.status} {r.read().decode().strip()}")
except urllib.error.HTTPError as e:
    print(f"healthz {e.code} {e.read().decode().strip()}")

with urllib.request.urlopen(f"http://{ADDRESS}/metrics", timeout=10) as r:
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    text = r.read().decode()
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        print(f"{sample.name}{{{labels}}} {sample.value:g}")
