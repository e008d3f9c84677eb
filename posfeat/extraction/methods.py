"""The study's methods: what each name in ``extract.methods`` is, and what its features are made from.

A method is a name and a spec (``conf/extract.methods/<name>.yaml``)::

    posfeat:  {kind: posfeat,  hpatches: models/posfeat.pt, aachen: models/posfeat.pt, eth: models/posfeat.pt}
    sift:     {kind: sift,     hpatches: posfeat/extraction/sift.py, ...}
    superpoint: {kind: given,  hpatches: /feats/sp-hpatches.h5, aachen: /feats/sp-aachen.h5, eth: /feats/sp-eth.h5}

``kind`` says how its features of one benchmark are made; the benchmark's entry names the one file they are
made from (a checkpoint, the extractor's code, or the given hloc feature file), which the DVC stage declares
as a dependency. Only this module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from posfeat.settings import ParamError

#: how a method's features are made: from a PoSFeat checkpoint (its keypoints, or its descriptors on SIFT
#: keypoints), by OpenCV, or given as an hloc-layout feature file per benchmark
KINDS: tuple[str, ...] = ("posfeat", "posfeat_sift", "sift", "rootsift", "given")
#: kinds that need a PoSFeat checkpoint
NETWORK_KINDS: tuple[str, ...] = ("posfeat", "posfeat_sift")
#: the benchmarks a method spec names a source for
SOURCES: tuple[str, ...] = ("hpatches", "aachen", "eth")


@dataclass(frozen=True)
class MethodSpec:
    """One method of the study: its ``name``, ``kind`` (:data:`KINDS`) and per-benchmark source file."""

    name: str
    kind: str
    sources: dict

    def source(self, benchmark: str, where: str = "extract.methods") -> str:
        """The file this method's features of ``benchmark`` are made from; a :class:`ParamError` if unset."""
        value = self.sources.get(benchmark)
        if not value:
            raise ParamError(
                f"params.yaml: {where}.{self.name}.{benchmark} is missing: a {self.kind} method names the file "
                f"its {benchmark} features are made from"
            )
        return str(value)

    @property
    def needs_model(self) -> bool:
        """Whether the features come from a PoSFeat checkpoint."""
        return self.kind in NETWORK_KINDS


def method_spec(name: str, value, where: str = "extract.methods") -> MethodSpec:
    """One spec from its params entry (a mapping with ``kind`` and per-benchmark sources)."""
    if not isinstance(value, dict):
        raise ParamError(f"params.yaml: {where}.{name} = {value!r}: expected a mapping with kind and sources")
    kind = value.get("kind")
    if kind not in KINDS:
        raise ParamError(f"params.yaml: {where}.{name}.kind = {kind!r}: expected one of {', '.join(KINDS)}")
    unknown = sorted(set(value) - {"kind", *SOURCES})
    if unknown:
        raise ParamError(
            f"params.yaml: {where}.{name} has unknown keys {unknown} (expected kind, {', '.join(SOURCES)})"
        )
    return MethodSpec(name, kind, {k: value[k] for k in SOURCES if k in value})


def method_specs(value, where: str = "extract.methods") -> dict[str, MethodSpec]:
    """``{name: MethodSpec}`` from ``extract.methods``: the composed mapping, or a list of built-in names
    (``[posfeat, sift]``: each of kind = its name, the checkpoint ``models/posfeat.pt``)."""
    if isinstance(value, (list, tuple)):
        unknown = [m for m in value if m not in KINDS or m == "given"]
        if unknown:
            raise ParamError(
                f"params.yaml: {where} = {list(value)}: {unknown} are not built-in methods "
                f"({', '.join(k for k in KINDS if k != 'given')}); describe them in conf/extract.methods/"
            )
        return {m: builtin_spec(m) for m in value}
    if not isinstance(value, dict) or not value:
        raise ParamError(f"params.yaml: {where} = {value!r}: expected a non-empty mapping name -> method spec")
    return {str(name): method_spec(str(name), spec, where) for name, spec in value.items()}


def builtin_spec(kind: str, weights: str = "models/posfeat.pt") -> MethodSpec:
    """The spec of a built-in method named after its kind, as conf/extract.methods/ writes it."""
    source = weights if kind in NETWORK_KINDS else "posfeat/extraction/sift.py"
    return MethodSpec(kind, kind, {b: source for b in SOURCES})


__all__ = ["KINDS", "NETWORK_KINDS", "SOURCES", "MethodSpec", "builtin_spec", "method_spec", "method_specs"]
