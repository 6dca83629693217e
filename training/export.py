"""Convert the fitted vectoriser + per-head classifiers into ONE ONNX graph.

Graph: input ``text`` (string [N, 1], jieba tokens joined by spaces) -> shared TF-IDF
features -> one probability output per head, ``<head>_probabilities`` (float [N, L]).
Each piece is converted separately (skl2onnx / onnxmltools) and the pieces are merged
with ``onnx.compose`` so the text is vectorised once for all heads.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import compose

__all__ = ["to_onnx", "TARGET_OPSET", "INPUT_NAME", "output_name", "parity_report"]

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
INPUT_NAME = "text"
FEATURES = "features"


def output_name(head: str) -> str:
    return f"{head}_probabilities"


_registered = False


def _register_lightgbm() -> None:
    global _registered
    if _registered:
        return
    from lightgbm import LGBMClassifier
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    _registered = True


def _vectorizer_onnx(vec) -> onnx.ModelProto:
    """The featurizer: TF-IDF union, then (if present) the lexicon block appended."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    from .models import TOKEN_PATTERN

    union = getattr(vec, "union", vec)
    # Options keyed by object, not type: by type they would also hit the char vectoriser.
    word = dict(union.transformer_list)["word"]
    options = {id(word): {"tokenexp": TOKEN_PATTERN}}
    model = convert_sklearn(
        union, "vectorizer", initial_types=[(INPUT_NAME, StringTensorType([None, 1]))], options=options, target_opset=TARGET_OPSET
    )
    old = model.graph.output[0].name
    if getattr(vec, "lexicon", None) is None:
        # Rename the single output to a stable name the heads connect to.
        return _rename_output(model, old, FEATURES)
    model = _rename_output(model, old, "tfidf")
    return _merge(model, _lexicon_onnx(vec), [("tfidf", "tfidf")], [FEATURES], drop=["tfidf"])


def _lexicon_onnx(vec) -> onnx.ModelProto:
    """features = concat(tfidf[:, :a], min(tfidf[:, a:b] @ M, 1)), as Featurizer.transform does."""
    from onnx import TensorProto, helper, numpy_helper

    a, b = vec.lexicon_columns
    n_tfidf = sum(len(v.vocabulary_) for _, v in vec.union.transformer_list)
    init = [
        numpy_helper.from_array(np.array([a], dtype=np.int64), "lex_start"),
        numpy_helper.from_array(np.array([b], dtype=np.int64), "lex_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "lex_axis"),
        numpy_helper.from_array(vec.lexicon.astype(np.float32), "lex_matrix"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "lex_one"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "lex_zero"),
    ]
    nodes = [
        helper.make_node("Slice", ["tfidf", "lex_start", "lex_end", "lex_axis"], ["lex_counts"]),
        helper.make_node("MatMul", ["lex_counts", "lex_matrix"], ["lex_hits"]),
        helper.make_node("Min", ["lex_hits", "lex_one"], ["lex_flags"]),
        helper.make_node("Slice", ["tfidf", "lex_zero", "lex_start", "lex_axis"], ["tfidf_kept"]),
        helper.make_node("Concat", ["tfidf_kept", "lex_flags"], [FEATURES], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "lexicon",
        [helper.make_tensor_value_info("tfidf", TensorProto.FLOAT, [None, n_tfidf])],
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, a + vec.lexicon.shape[1]])],
        initializer=init,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])])


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    for out in model.graph.output:
        if out.name == old:
            out.name = new
    return model


def _rename_edge(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    for node in model.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
    for inp in model.graph.input:
        if inp.name == old:
            inp.name = new
    return model


def _head_onnx(clf, head: str, n_features: int) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _register_lightgbm()
    opts = {id(clf): {"zipmap": False}}
    model = convert_sklearn(
        clf, f"head_{head}", initial_types=[(FEATURES, FloatTensorType([None, n_features]))], options=opts, target_opset=TARGET_OPSET
    )
    prob = [o.name for o in model.graph.output if "prob" in o.name.lower()]
    if len(prob) != 1:
        raise RuntimeError(f"cannot find the probability output of head {head}: {[o.name for o in model.graph.output]}")
    # Keep only the probabilities: the label output is recomputed with tuned thresholds.
    model = _rename_output(model, prob[0], output_name(head))
    keep = [o for o in model.graph.output if o.name == output_name(head)]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    model = onnx.utils.Extractor(model).extract_model([FEATURES], [output_name(head)])
    # Prefix internal names so heads do not collide, then restore the two interface names.
    model = compose.add_prefix(model, prefix=f"{head}_")
    model = _rename_edge(model, f"{head}_{FEATURES}", FEATURES)
    return _rename_output(model, f"{head}_{output_name(head)}", output_name(head))


def _mean_onnx(inputs: list[str], output: str, n_labels: int) -> onnx.ModelProto:
    """A tiny graph: the element-wise mean of the members' probabilities."""
    from onnx import TensorProto, helper

    shape = [None, n_labels]
    nodes = [
        helper.make_node("Sum", inputs, [f"{output}__sum"]),
        helper.make_node("Mul", [f"{output}__sum", f"{output}__w"], [output]),
    ]
    w = helper.make_tensor(f"{output}__w", TensorProto.FLOAT, [], [1.0 / len(inputs)])
    graph = helper.make_graph(
        nodes, f"mean_{output}",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, shape) for i in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])])


def _merge(merged: onnx.ModelProto, part: onnx.ModelProto, io_map, new_outputs, drop=()) -> onnx.ModelProto:
    merged = _align_opsets(merged, part)
    keep = [o.name for o in merged.graph.output if o.name not in drop] + list(new_outputs)
    return compose.merge_models(merged, part, io_map=io_map, outputs=keep)


def to_onnx(vec, heads: dict, n_features: int) -> onnx.ModelProto:
    """``heads``: head -> fitted OneVsRest classifier, or a list of them whose
    probabilities are averaged (features -> probabilities)."""
    merged = _vectorizer_onnx(vec)
    for head, clf in heads.items():
        members = clf if isinstance(clf, (list, tuple)) else [clf]
        if len(members) == 1:
            merged = _merge(merged, _head_onnx(members[0], head, n_features), [(FEATURES, FEATURES)], [output_name(head)])
            continue
        names = []
        for i, m in enumerate(members):
            sub = f"{head}__m{i}"
            merged = _merge(merged, _head_onnx(m, sub, n_features), [(FEATURES, FEATURES)], [output_name(sub)])
            names.append(output_name(sub))
        n_labels = len(members[0].estimators_)
        mean = _mean_onnx(names, output_name(head), n_labels)
        merged = _merge(merged, mean, [(n, n) for n in names], [output_name(head)])
        outs = [o for o in merged.graph.output if o.name not in names]
        del merged.graph.output[:]
        merged.graph.output.extend(outs)
    # The features themselves are an internal tensor, not an output.
    outs = [o for o in merged.graph.output if o.name != FEATURES]
    del merged.graph.output[:]
    merged.graph.output.extend(outs)
    onnx.checker.check_model(merged)
    return merged


def _align_opsets(a: onnx.ModelProto, b: onnx.ModelProto) -> onnx.ModelProto:
    """merge_models needs equal IR versions and opset imports on both sides."""
    ops = {}
    for m in (a, b):
        for imp in m.opset_import:
            ops[imp.domain] = max(ops.get(imp.domain, 0), imp.version)
    for m in (a, b):
        del m.opset_import[:]
        m.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(ops.items()))
        m.ir_version = max(a.ir_version, b.ir_version)
    return a


def onnx_probabilities(model_bytes: bytes, texts: list[str], heads) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    out = sess.run([output_name(h) for h in heads], {INPUT_NAME: np.array(texts, dtype=object).reshape(-1, 1)})
    return dict(zip(heads, out))


def parity_report(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], thresholds: dict) -> dict:
    """How far ``other`` is from ``reference`` per head: the largest probability difference,
    and whether the thresholded label sets are identical (the form the manifest records)."""
    report = {"n": 0, "max_abs_diff": {}, "label_sets_identical": {}}
    for h, ref in reference.items():
        th = np.asarray(thresholds[h], dtype=np.float32)
        report["n"] = len(ref)
        diff = np.abs(ref - other[h])
        report["max_abs_diff"][h] = float(diff.max()) if len(ref) else 0.0
        report.setdefault("p99_abs_diff", {})[h] = float(np.quantile(diff.max(axis=1), 0.99)) if len(ref) else 0.0
        report["label_sets_identical"][h] = bool(((ref >= th) == (other[h] >= th)).all())
    return report
