"""Fact extraction on real clause excerpts from labels/documents, values checked by hand.

(text, amount in 万元, per year, ratio %, duration in years). The corpus writes no "千元"
amount; yuan-level amounts (5000元, 1000元) are covered instead, plus one constructed
千元 case marked as such.
"""

import pytest

from tagger.facts import cn_number, extract_facts

CASES = [
    # compilation, 广州黄埔细则 第十五条
    ("按其使用费的30%给予奖励，每家企业或机构每年奖励不超过200万元。", 200, True, 30, None),
    # x088: revenue threshold is not the amount
    ("新引进企业年营业收入达到2000万元(含)以上的,按照其首次装修办公用房实际发生费用30%的标准,给予最高100万元的一次性装修补助。", 100, False, 30, None),
    # x070: background statistics, no support amount
    ("2018年全市电子信息制造业完成规模以上工业总产值2.13万亿元,约占全国行业规模六分之一,实现规模以上工业增加值5585.8亿元", None, False, None, None),
    # compilation 13 (成都)
    ("对龙头企业投资的人工智能产业项目，按吸收的创业风险投资金额给予最高不超过10%的补助，单个项目最高不超过100万元。对首发上市的企业，按融资额的1%给予最高350万元奖励。", 350, False, 10, None),
    # x001 (廊坊)
    ("对承担人工智能服务平台建设的主体给予建设投资额10%的一次性补助,最高不超过1000万元;对于承担平台运营和产业生态体系构建的主体,投运前三年按其年运营实际总投入的20%给予资金补助,每年最高不超过300万元。", 1000, False, 20, 3),
    # x089
    ("重点补贴对象在2019年12月31日起租的,每年按照实际租金的50%予以补贴,可连续补贴3年,每年补贴金额最高不超过500万元。", 500, True, 50, 3),
    # x047
    ("对平台牵头建设单位,按不超过平台建设实际投入50%的比例,给予一次性最高1000万元补助。", 1000, False, 50, None),
    # x087
    ("对租赁入驻商务楼宇的鼓励类企业,给予实际支付租金25%的补助,补贴3年,每年补贴金额最高不超过30万元。", 30, True, 25, 3),
    # compilation 07 (天津)
    ("对创建工业节能与绿色发展示范单位，给予最高60万元奖励。对被评定为国家级的示范单位，按照总奖金额的20%给予奖励，最高500万元。", 500, False, 20, None),
    # compilation 02 (中关村) 第十条
    ("按照不高于企业测试费用30%的比例给予补贴支持，最高补贴300万元。", 300, False, 30, None),
    # zj-540: per-person monthly yuan and a yearly cap
    ("给予见习单位每人每月50元的见习管理补贴，每年的补贴总额不超过1万元。", 1, True, None, None),
    # x047 vertical models
    ("遴选优质行业垂直模型项目,按项目推进成效分阶段给予补助,单项目补助最高不超过1000万元。", 1000, False, None, None),
    # compilation 20 第三十三条
    ("经区政府、管委会同意后,每年给予协会或联盟不超过50万元的资金扶持。", 50, True, None, None),
    # x077: registered-capital threshold excluded; 100% ratio; per-year cap
    ("对企业租用办公用房给予自设立或引进年度起三年内最高500平方米80%的房租补贴;实到注册资金1000万元以上或入驻白马湖生态创意城的,给予三年100%房租补贴。租用SOHO创意园工作室的,每年每幢房租补贴不超过12万元。", 12, True, 100, 3),
    # compilation 20 第十三条
    ("按每个应用项目经认定的实际投入费用的50%给予奖励。每个项目奖励额度不超过当年企业对本区地方经济发展贡献，最高奖励不超过100万元，同一项目不重复奖励。", 100, False, 50, None),
    # compilation 17 (济南)
    ("分别给予最高500万元（国家级）、100万元（省级）支持；对获批认定为国家人工智能相关“世界一流学科”和省“一流学科”的驻济高校分别给予每个学科500万元（国家）、200万元（省）资金支持。", 500, False, None, None),
    # zj-502
    ("对在武义落地的项目参加国家级、省级创客大赛并获奖的，给予最高30万元的资助。", 30, False, None, None),
    # x073
    ("按照不超过国家同期基准利率的50%给予贷款贴息,每家企业每年最高不超过30万元。", 30, True, 50, None),
    # x006
    ("对经认定的贵州省数智产业园,每年最高给予500万元项目奖补。融资有贴息,对数据标注企业当年用于业务发展的银行贷款,最高给予500万元贴息支持。", 500, True, None, None),
    # zj-502 salary subsidy
    ("可以申请薪资补助，标准按计税报酬总额的50%，最高每人每年50万元，补助期限最长5年。", 50, True, 50, 5),
    # compilation 14 (成都细则)
    ("按项目投入的15%给予资金支持；购置本地企业生产的智能装备产品超过50%的，按项目投入的20%给予资金支持，单个项目补助最高不超过500万元。", 500, False, 20, None),
    # x060: several rewards, the largest wins
    ("对新落户总部企业按照年租金金额的前三年50%、后两年30%给予最高不超过300万元的补贴。在沪深交易所(含科创板)上市的奖励3000万元;在全国中小企业股份转让系统挂牌的奖励150万元。", 3000, False, 50, 3),
    # zj-540: yuan-level amount
    ("且正常经营6个月以上的，给予一次性5000元的创业社保补贴。", 0.5, False, None, None),
    # compilation 14: 亿元
    ("对来蓉从事人工智能领域创新创业的图灵奖获得者、菲尔兹奖获得者等国际顶尖人才（团队），给予最高1亿元的综合资助；对“两院”院士等，给予最高300万元的资金资助。", 10000, False, None, None),
    # zj-528
    ("向证监会递交首发上市申请材料，获发审委核准通过并拿到发行批文，给予300万元奖励。", 300, False, None, None),
    # x088: area standard and contribution threshold
    ("首年按照总面积不超过企业办公人数10平米/人/年的标准给予补助,补助金额不超过实际房租价格的70%,每家企业每年补助总额不超过100万元;第二年起仍申请补助的企业,要求其上年度对滨海高新区综合贡献不少于100万元。补助期限不超过3年。", 100, True, 70, 3),
    # compilation 29 (长沙)
    ("对实际到位资金额达到2000万元（含）以上的，按其实收资本的5%给予一次性奖励，单个企业最高1000万元。企业获利后，根据其地方经济社会发展贡献，给予连续三年100%的奖励，每家企业每年最高500万元。", 1000, False, 100, 3),
    # compilation 03: industry target, not support
    ("到2020年，智能核心芯片产业规模达到200亿元。", None, False, None, None),
    # compilation 23 (武汉)
    ("对新认定的国家、省、市级人工智能专业孵化器，分别给予200万元、100万元、50万元资金补助。", 200, False, None, None),
    # zj-502
    ("最高给予年租金50%的补助，单个场所最高50万元，补助期限最长3年，累计补助最高200万元。", 200, False, 50, 3),
    # zj-502: yuan per workstation per year
    ("对认定为市级“青创工场”的，给予每年1000元/个工位的补助；", 0.1, True, None, None),
    # zj-540 prizes
    ("给予一等奖3万元、二等奖2万元、三等奖1万元、优胜奖5000元的奖励。", 3, False, None, None),
    # compilation 09 (杭州): investment thresholds excluded
    ("给予入围的应用场景项目不超过项目总投资20%的资助。其中，总投资在1500万元及以下的一般项目，资助最高不超过300万元；总投资在1500万元以上的重点项目，资助最高不超过1000万元。", 1000, False, 20, None),
    # compilation 05 (上海)
    ("给予总投资最高30%，总额最高2000万元的支持。", 2000, False, 30, None),
    # x051: annual interest-subsidy cap
    ("按照不超过一年期贷款市场报价利率(LPR)的60%予以贴息。其中,科技型单户企业年贴息上限50万元,专精特新单户企业年贴息上限100万元。", 100, True, 60, None),
    # compilation 27 (长沙): range and fund size
    ("对入驻基地的新一代人工智能企业给予5年租金减免，每年根据企业孵化情况市财政给予基地500—1000万元资金补助，暂定5年。市产业投资基金联合社会资本发起设立人工智能相关产业发展子基金，规模50亿元。", 1000, True, None, 5),
    # zj-528: tiers of financing are thresholds, rewards are amounts
    ("按2000万元（含）以下、2000—5000万元、5000万元（含）以上三档分别奖励20万元、30万元、40万元；", 40, False, None, None),
    # compilation 17
    ("以每人1000元标准给予补贴，每个单位每年最高补贴100万元。", 100, True, None, None),
    # compilation 20 第二十条
    ("按贷款项目实际发生贷款额的1.5%（年利率）给予贴息，贴息期最长3年。企业可就多笔贷款项目申请贴息，每家企业每年最高贴息100万元。", 100, True, 1.5, 3),
    # compilation 20 第二十三条
    ("实缴注册资本1000万元以上的，在区内租赁办公用房自用的，按实际租金的50%给予补贴，补贴期限3年，每家企业每年最高补贴100万元。", 100, True, 50, 3),
    # compilation 23
    ("自认定后次年度起，连续3年按照核算年度地方财政贡献较上年度增量部分的50%给予奖励，每年最高奖励500万元。", 500, True, 50, 3),
    # compilation 02: 2亿元
    ("对于形成跨越式突破的机构和团队，以“一事一议”方式给予最高2亿元资金支持。", 20000, False, None, None),
    # x003: unit rent price is a rate, not an amount
    ("前三年按实际租金的100%给予补助,第四、第五年按实际租金的50%给予补助,每家企业补助的建筑面积最高300平方米,租金补助标准前三年最高50元/平方米。", None, False, 100, 5),
    # x093: land price, no support
    ("由业主自平场的,园区管委会包干收取土地出让综合价(含土地出让金):7—9万元/亩。", None, False, None, None),
    # constructed (no 千元 in the corpus): 千元 normalises to 0.1 万元
    ("对参赛团队给予每队5千元奖励。", 0.5, False, None, None),
]


@pytest.mark.parametrize("text,amount,per_year,ratio,years", CASES)
def test_real_excerpts(text, amount, per_year, ratio, years):
    f = extract_facts(text)
    assert f.amount_wan == (pytest.approx(amount) if amount is not None else None)
    assert f.amount_per_year is per_year
    assert f.ratio_pct == (pytest.approx(ratio) if ratio is not None else None)
    assert f.duration_years == years


def test_case_count():
    assert len(CASES) >= 40


def test_beneficiaries_where_stated():
    assert extract_facts("对新认定的国家级人工智能开放创新平台给予一次性奖励500万元。").beneficiaries == ["platform"]
    assert extract_facts("对引进的博士给予每人10万元安家补贴。").beneficiaries == ["talent"]
    assert extract_facts("对入驻园区的企业给予三年房租补贴。").beneficiaries == ["enterprise", "park"]
    assert extract_facts("加强人工智能伦理研究。").beneficiaries == []


@pytest.mark.parametrize("s,v", [("3", 3), ("三", 3), ("十五", 15), ("二十", 20), ("一百", 100), ("2.5", 2.5), ("x", None)])
def test_cn_number(s, v):
    assert cn_number(s) == v
