"""A copy of the committed bundle with its drift reference (drift.json) added the way the
lead adds it to the shipped one: ``tagger-train profile`` on the labeled clauses."""

import shutil

from .conftest import ROOT

BUNDLE = ROOT / "models" / "policy-tagger"

# Real Chinese prose far from industrial policy (a recipe, a match report): the words a
# policy model has no column for.
FOREIGN = [
    "将鸡蛋打散，加入少许盐和葱花，热锅冷油，待油温七成热时倒入蛋液，用筷子轻轻划散后盛出备用。",
    "番茄洗净切块，锅中留底油，放入番茄翻炒出汁，再倒入炒好的鸡蛋，加一勺白糖调味，翻匀即可出锅。",
    "上半场第三十七分钟，客队前锋接队友传中头球破门，主队门将扑救不及，比分改写为一比零。",
    "下半场主队换上两名边锋，加强两翼冲击，终场前五分钟角球混战中后卫补射扳平比分，双方最终握手言和。",
    "外婆家的院子里种着桂花树，每到秋天，满院飘香，我们常常坐在树下剥毛豆、听收音机里的评书。",
    "面团揉至光滑后盖上湿布醒发半小时，擀成薄片，撒上芝麻和葱油，卷起切段，放入平底锅煎至两面金黄。",
]


def profiled_bundle(tmp_path_factory, name: str = "bundle"):
    from tagger.config import get_settings
    from tagger.taxonomy import load_taxonomy
    from training.drift_profile import profile_bundle

    dst = tmp_path_factory.mktemp(name) / "policy-tagger"
    shutil.copytree(BUNDLE, dst)
    st = get_settings()
    profile_bundle(dst, st.clauses_file, load_taxonomy(st.taxonomy_file))
    return dst
