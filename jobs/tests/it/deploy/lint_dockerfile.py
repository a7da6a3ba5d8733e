"""Lints a Dockerfile with hadolint's main rules (hadolint itself cannot be installed
here), on the parse of dockerfile-parse, and checks that what it COPYs from the build
context exists and is not excluded by .dockerignore.

    lint_dockerfile.py Dockerfile .dockerignore     (exit 1 with one line per finding)
"""

import fnmatch
import json
import os
import sys

from dockerfile_parse import DockerfileParser


def findings(path, ignore_path):
    with open(path, "rb") as f:
        parser = DockerfileParser(fileobj=f)
        parser.content  # read (and parse) it while the file is open
        instructions = parser.structure
    found = []
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    if len(froms) < 2:
        found.append("multi-stage: a build stage and a runtime stage are expected")
    for i in froms:
        image = i["value"].split()[0]
        if image == "scratch" or image.split(" ")[0] in stage_names(froms):
            continue
        if ":" not in image.split("/")[-1] and "@" not in image:
            found.append(f"DL3006 line {i['startline'] + 1}: tag the image explicitly ({image})")
        elif image.endswith(":latest"):
            found.append(f"DL3007 line {i['startline'] + 1}: do not use the latest tag ({image})")
    for i in instructions:
        line = i["startline"] + 1
        value = i["value"]
        if i["instruction"] == "RUN" and "apt-get install" in value:
            if "--no-install-recommends" not in value:
                found.append(f"DL3015 line {line}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in value:
                found.append(f"DL3009 line {line}: delete the apt lists after installing")
            if " -y" not in value and "--yes" not in value:
                found.append(f"DL3014 line {line}: apt-get install without -y")
        if i["instruction"] in ("CMD", "ENTRYPOINT"):
            try:
                json.loads(value)
            except ValueError:
                found.append(f"DL3025 line {line}: use the JSON (exec) form of {i['instruction']}")
        if i["instruction"] == "ADD" and not value.startswith("--"):
            found.append(f"DL3020 line {line}: use COPY, not ADD, for files")
    last_stage = instructions[instructions.index(froms[-1]):] if froms else instructions
    users = [i["value"].split(":")[0] for i in last_stage if i["instruction"] == "USER"]
    if not users or users[-1] in ("root", "0"):
        found.append("DL3002: the runtime stage must switch to a non-root USER")
    found += context_findings(path, ignore_path, instructions)
    return found


def stage_names(froms):
    return {i["value"].split()[-1] for i in froms if " as " in i["value"].lower()}


def context_findings(path, ignore_path, instructions):
    """COPY sources (without --from) must exist in the context (the repository root) and
    not be excluded by .dockerignore."""
    context = os.path.dirname(os.path.abspath(ignore_path))
    with open(ignore_path) as f:
        patterns = [p.strip().rstrip("/") for p in f if p.strip() and not p.startswith("#")]
    found = []
    for i in instructions:
        if i["instruction"] != "COPY" or "--from" in i["value"]:
            continue
        sources = [w for w in i["value"].split() if not w.startswith("--")][:-1]
        for source in sources:
            if not os.path.exists(os.path.join(context, source)):
                found.append(f"COPY line {i['startline'] + 1}: {source} is not in the build context")
            if any(fnmatch.fnmatch(source, p) or source.startswith(p + "/") or source == p for p in patterns):
                found.append(f"COPY line {i['startline'] + 1}: {source} is excluded by .dockerignore")
    return found


def main():
    found = findings(sys.argv[1], sys.argv[2])
    for line in found:
        print(line)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
