"""Prints how many tests of a folder ran, skipped and failed in a JUnit XML report (CI says how
many solo-learn tests ran: they skip where solo-learn is not installed)."""

import sys
import xml.etree.ElementTree as ElementTree


def main(report: str, folder: str) -> int:
    prefix = folder.rstrip("/").replace("/", ".") + "."
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if not case.get("classname", "").startswith(prefix):
            continue
        if case.find("skipped") is not None:
            counts["skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        else:
            counts["ran"] += 1
    print(f"{folder}: {counts['ran']} ran and passed, {counts['skipped']} skipped, {counts['failed']} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
