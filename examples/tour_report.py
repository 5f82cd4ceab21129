#!/usr/bin/env python3
"""Joins the layout tour's printed addresses with memcensus's JSON layout of the same run:
for each value, the region memcensus found it in, its kind, object and ELF sections."""
import json
import re
import sys


def main():
    tour_lines = open(sys.argv[1]).read().splitlines()
    layout = json.load(open(sys.argv[2]))
    regions = layout["regions"]
    threads = {t["tid"]: t["name"] for t in layout["threads"]}
    print(f"{'value':<28} {'address':>14}  {'memcensus says':<8} {'expected':<28} where")
    for line in tour_lines:
        m = re.match(r"\s+(.+?)\s+(0x[0-9a-f]+)\s+expected in (.*)", line)
        if not m:
            continue
        name, addr, expected = m.group(1), int(m.group(2), 16), m.group(3)
        region = next((r for r in regions if r["start"] <= addr < r["end"]), None)
        if region is None:
            print(f"{name:<28} {addr:#14x}  {'unmapped':<8} {expected}")
            continue
        where = (region["object"] or region["path"] or "").split("/")[-1]
        secs = [s for s in region["sections"] if not s.startswith("[LOAD")]
        if secs:
            where += " " + ",".join(secs[:3])
        if region["tid"] is not None:
            where += f" thread {region['tid']} ({threads.get(region['tid'], '?')})"
        kind = region["kind"]
        mark = "" if expected.split()[0] == kind else "  <- differs"
        print(f"{name:<28} {addr:#14x}  {kind:<8} {expected:<28} {where}{mark}")


if __name__ == "__main__":
    main()
