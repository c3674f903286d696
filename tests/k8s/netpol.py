"""Evaluates Kubernetes NetworkPolicies (networking.k8s.io/v1, ingress) the
way the API defines them, for the checks in tests/k8s: may a connection from
a peer reach a pod's port?

    from netpol import Peer, ingress_allowed
    router = Peer(labels={...}, namespace="tpserve", ip="198.18.0.2")
    ok, why = ingress_allowed(policies, namespaces, dst=worker, port=50061, src=router)

A pod selected by no ingress policy accepts everything; a selected pod accepts
a connection when any rule of any selecting policy admits its source and
port. Peers outside the cluster have no labels (namespace None) and match only
ipBlock rules or rules without `from`.
"""
import dataclasses
import ipaddress

from manifests import selects


@dataclasses.dataclass
class Peer:
    labels: dict
    namespace: str | None  # None: outside the cluster
    ip: str
    ports: dict = dataclasses.field(default_factory=dict)  # container port name -> number


def _peer_matches(rule_peer, src, policy_ns, namespaces):
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(src.ip)
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if src.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = namespaces.get(src.namespace, {"kubernetes.io/metadata.name": src.namespace})
        if not selects(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif src.namespace != policy_ns:
        return False
    if "podSelector" in rule_peer and not selects(rule_peer["podSelector"], src.labels):
        return False
    return True


def _port_matches(rule_ports, port, dst):
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            want = dst.ports.get(want)
            if want is None:
                continue
        if want <= port <= p.get("endPort", want):
            return True
    return False


def ingress_allowed(policies, namespaces, dst, port, src):
    """(allowed, reason). `namespaces`: {name: labels} of known namespaces."""
    selecting = [p for p in policies
                 if p["metadata"].get("namespace") == dst.namespace
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"].get("podSelector", {}), dst.labels)]
    if not selecting:
        return True, "no policy selects the destination"
    for p in selecting:
        ns = p["metadata"].get("namespace")
        for i, rule in enumerate(p["spec"].get("ingress") or []):
            froms = rule.get("from")
            if froms and not any(_peer_matches(f, src, ns, namespaces) for f in froms):
                continue
            if _port_matches(rule.get("ports"), port, dst):
                return True, f"{p['metadata']['name']} ingress[{i}]"
    names = ", ".join(p["metadata"]["name"] for p in selecting)
    return False, f"denied: selected by {names}, no rule admits it"
