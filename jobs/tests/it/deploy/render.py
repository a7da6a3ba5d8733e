"""The processes deploy/compose.yaml and the Helm chart deploy/helm/gristmill describe, as
JSON for the integration test that starts them (jobs/tests/it/deploy/mod.rs).

    render.py chart CHART_DIR --release R --namespace NS --root DIR [--set a.b=v ...]
    render.py compose COMPOSE_FILE --root DIR

`helm` cannot be installed here, so the chart is rendered by `Chart`, a renderer of the
subset of Helm's template language the chart uses (values, release fields, if/else, range
over maps, quote, toYaml, nindent, default); anything else is an error, never skipped.
Then the pods are derived as a kubelet would: replicas named NAME-i, `$(VAR)` expanded in
env values, the downward API (pod name, namespace, limits.memory), volume mounts mapped to
directories under --root. Service names (and each StatefulSet pod's name under its
headless Service) are listed with the pods they reach, for /etc/hosts.
"""

import argparse
import json
import os
import re
import sys

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class Chart:
    """Renders the chart's templates with its values."""

    def __init__(self, chart_dir, release, namespace, overrides):
        self.dir = chart_dir
        with open(os.path.join(chart_dir, "values.yaml")) as f:
            values = yaml.safe_load(f) or {}
        for item in overrides:
            key, value = item.split("=", 1)
            node = values
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = yaml.safe_load(value)
        with open(os.path.join(chart_dir, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        self.root = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion")},
        }

    def documents(self):
        docs, self.texts = [], []
        tdir = os.path.join(self.dir, "templates")
        for name in sorted(os.listdir(tdir)):
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(tdir, name)) as f:
                text = render(f.read(), self.root)
            self.texts.append(f"---\n# Source: gristmill/templates/{name}\n" + text.strip("\n") + "\n")
            docs += [d for d in yaml.safe_load_all(text) if d]
        return docs


def tokens(text):
    """Text and actions, with `{{-` and `-}}` trimming the whitespace beside them."""
    out, pos = [], 0
    for m in ACTION.finditer(text):
        before = text[pos:m.start()]
        if m.group(1):
            before = before.rstrip()
        if out and out[-1][0] == "trim":
            out.pop()
            before = before.lstrip()
        out.append(("text", before))
        out.append(("action", m.group(2)))
        if m.group(3):
            out.append(("trim", ""))
        pos = m.end()
    rest = text[pos:]
    if out and out[-1][0] == "trim":
        out.pop()
        rest = rest.lstrip()
    out.append(("text", rest))
    return out


def parse(toks, i=0, stop=("end",)):
    """A tree of nodes up to one of `stop`; returns (nodes, index, stopper)."""
    nodes = []
    while i < len(toks):
        kind, value = toks[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in stop:
            return nodes, i, value
        if word == "if":
            body, i, stopper = parse(toks, i, ("else", "end"))
            other = []
            if stopper == "else":
                other, i, _ = parse(toks, i, ("end",))
            nodes.append(("if", value[2:].strip(), body, other))
        elif word == "range":
            body, i, _ = parse(toks, i, ("end",))
            nodes.append(("range", value[5:].strip(), body))
        elif word.startswith("/*"):
            continue
        else:
            nodes.append(("expr", value))
    return nodes, i, None


def render(text, root):
    nodes, _, stopper = parse(tokens(text))
    if stopper:
        raise SystemExit(f"unexpected {{{{ {stopper} }}}}")
    return "".join(run(nodes, root, {}))


def run(nodes, root, variables):
    for node in nodes:
        if node[0] == "text":
            yield node[1]
        elif node[0] == "expr":
            yield to_text(pipeline(node[1], root, variables))
        elif node[0] == "if":
            branch = node[2] if truthy(pipeline(node[1], root, variables)) else node[3]
            yield from run(branch, root, variables)
        elif node[0] == "range":
            m = re.fullmatch(r"\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.+)", node[1])
            if not m:
                raise SystemExit(f"unsupported range: {node[1]}")
            items = pipeline(m.group(3), root, variables) or {}
            pairs = sorted(items.items()) if isinstance(items, dict) else list(enumerate(items))
            for key, value in pairs:
                yield from run(node[2], root, {**variables, m.group(1): key, m.group(2): value})


def pipeline(text, root, variables):
    stages = [s.strip() for s in text.split("|")]
    value = command(stages[0], root, variables, None, first=True)
    for stage in stages[1:]:
        value = command(stage, root, variables, value, first=False)
    return value


def command(text, root, variables, piped, first):
    words = text.split()
    name, args = words[0], [operand(w, root, variables) for w in words[1:]]
    if not first:
        args.append(piped)
    if name.startswith(".") or name.startswith("$") or name[0].isdigit() or name[0] == '"':
        return operand(name, root, variables)
    if name == "quote":
        return '"' + to_text(args[0]).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if name == "toYaml":
        return yaml.safe_dump(args[0], default_flow_style=False, sort_keys=True).rstrip("\n")
    if name in ("nindent", "indent"):
        pad = " " * int(args[0])
        body = "\n".join(pad + line for line in to_text(args[1]).split("\n"))
        return "\n" + body if name == "nindent" else body
    if name == "default":
        return args[1] if truthy(args[1]) else args[0]
    raise SystemExit(f"template function not supported by this renderer: {name}")


def operand(word, root, variables):
    if word.startswith('"'):
        return json.loads(word)
    if word[0].isdigit():
        return int(word)
    if word.startswith("$"):
        return variables[word[1:]]
    value = root
    for part in word.strip(".").split("."):
        if part:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def truthy(value):
    return value not in (None, False, 0, "", [], {})


def to_text(value):
    if value is None:
        return ""
    if value is True or value is False:
        return str(value).lower()
    return str(value)


# ---- pods, as a kubelet would run them ----

UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1000, "M": 10**6, "G": 10**9}


def quantity(text):
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    return int(m.group(1)) * UNITS.get(m.group(2), 1)


def remap(text, mounts):
    for path, host in mounts.items():
        text = text.replace(path, host)
    return text


def chart_pods(docs, namespace, domain, root):
    pods, services = [], []
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        spec = doc["spec"]
        template = spec["template"]
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for i in range(spec.get("replicas", 1)):
            pod = f"{doc['metadata']['name']}-{i}"
            container = template["spec"]["containers"][0]
            volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
            mounts = {}
            for m in container.get("volumeMounts", []):
                volume = volumes.get(m["name"], {})
                if "secret" in volume:
                    host = os.path.join(root, "secrets", volume["secret"]["secretName"])
                elif m["name"] in claims:
                    host = os.path.join(root, "volumes", f"{m['name']}-{pod}")
                else:
                    raise SystemExit(f"{pod}: unsupported volume {m['name']}")
                mounts[m["mountPath"]] = host
            env = {}
            limits = container.get("resources", {}).get("limits", {})
            for e in container.get("env", []):
                if "value" in e:
                    value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
                else:
                    source = e["valueFrom"]
                    if "fieldRef" in source:
                        value = {"metadata.name": pod, "metadata.namespace": namespace}[source["fieldRef"]["fieldPath"]]
                    else:
                        value = str(quantity(limits[source["resourceFieldRef"]["resource"].split(".", 1)[1]]))
                env[e["name"]] = value
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            probes = []
            for kind in ("livenessProbe", "readinessProbe"):
                get = container.get(kind, {}).get("httpGet")
                if get:
                    port = ports.get(get["port"], get["port"])
                    probes.append({"kind": kind, "path": get["path"], "port": port, "scheme": get.get("scheme", "HTTP")})
            argv = container.get("command", []) + container.get("args", [])
            pods.append({
                "name": pod,
                "labels": template["metadata"]["labels"],
                "argv": [remap(a, mounts) for a in argv],
                "env": {k: remap(v, mounts) for k, v in env.items()},
                "dirs": sorted(mounts.values()),
                "probes": probes,
                "service_name": spec.get("serviceName"),
            })
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        name, selector = doc["metadata"]["name"], doc["spec"]["selector"]
        selected = [p for p in pods if all(p["labels"].get(k) == v for k, v in selector.items())]
        full = f"{name}.{namespace}.svc.{domain}"
        if doc["spec"].get("clusterIP") == "None":
            for p in selected:
                if p["service_name"] == name:
                    services.append({"names": [f"{p['name']}.{full}"], "pods": [p["name"]]})
        else:
            names = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", full]
            services.append({"names": names, "pods": [p["name"] for p in selected]})
    return pods, services


def compose_pods(path, root):
    with open(path) as f:
        compose = yaml.safe_load(f)
    pods, services = [], []
    for name, service in compose["services"].items():
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts[target] = os.path.join(root, "volumes", source)
        argv = service.get("entrypoint", []) + service.get("command", [])
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        depends = service.get("depends_on", {})
        oneshot_deps = [d for d, c in depends.items() if c.get("condition") == "service_completed_successfully"] if isinstance(depends, dict) else []
        pods.append({
            "name": name,
            "image": service["image"],
            "profiles": service.get("profiles", []),
            "argv": [remap(a, mounts) for a in argv],
            "env": {k: remap(v, mounts) for k, v in env.items()},
            "dirs": sorted(mounts.values()),
            "runs_before": oneshot_deps,
            "ports": [p.split(":")[-1] for p in service.get("ports", [])],
        })
        services.append({"names": [name] + ([service["hostname"]] if "hostname" in service else []), "pods": [name]})
    return pods, services


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["chart", "compose"])
    parser.add_argument("path")
    parser.add_argument("--release", default="gristmill")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--root", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--manifests", help="also write the rendered manifests here (YAML)")
    args = parser.parse_args()
    if args.kind == "chart":
        chart = Chart(args.path, args.release, args.namespace, args.set)
        docs = chart.documents()
        domain = chart.root["Values"]["clusterDomain"]
        pods, services = chart_pods(docs, args.namespace, domain, args.root)
        kinds = [d["kind"] for d in docs]
        if args.manifests:
            with open(args.manifests, "w") as f:
                f.write("".join(t for t in chart.texts if any(yaml.safe_load_all(t))))
    else:
        pods, services = compose_pods(args.path, args.root)
        kinds = []
    json.dump({"kinds": kinds, "pods": pods, "services": services}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
