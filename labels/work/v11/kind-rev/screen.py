"""Keyword screen for the kind boundary rules of head4-rev.md (proposes only; every
screened record is read and decided by hand in decisions.jsonl)."""
import json, re
recs = [json.loads(l) for l in open('/work/main/labels/clauses.jsonl')]
OFFER = r'(给予|补助|补贴|奖励|资助|奖补|贴息|扶持|一次性)'
def f(kinds, pat, no=None, sec=None, maxlen=None, doc=None):
    out = []
    for r in recs:
        t = r['text']; s = r['section'] or ''
        if r['kind'] not in kinds: continue
        if pat and not re.search(pat, t): continue
        if no and re.search(no, t): continue
        if sec and not re.search(sec, s): continue
        if maxlen and len(t) > maxlen: continue
        if doc and r['doc'] != doc: continue
        out.append(r)
    return out
S = {
 # 1 duty lines
 'r1_prov_duty': f({'provision'}, r'^(（[一二三四五六七八九十\d]+）|\d+[.、])?[^。；]{0,12}(负责|牵头|会同|组织实施|责任单位|配合)'),
 'r1_proc_task': f({'procedure'}, r'(建设|打造|培育|引进|开通|提供|支持|鼓励|推动|开展)[^。]{0,20}(平台|项目|中心|基地|服务|企业|人才|园区|通道)'),
 # 2 acceptance / assessment
 'r2_prov_accept': f({'provision'}, r'(验收|考核|绩效评价|评估)', no=r'(万元|%|％)'),
 'r2_proc_pay': f({'procedure'}, r'(验收|考核|评估|评审)[^。]{0,40}(给予|奖励|补助)[^。]{0,20}(万元|%)'),
 # 3 monitoring steps
 'r3_monitor': f({'provision'}, None, doc='zj-501'),
 # 4 standards vs thresholds
 'r4_prov_threshold': f({'provision'}, r'(不少于|不低于|不小于|以上|达到)', no=OFFER, sec=r'(条件|认定|标准|申报|对象|要求)'),
 'r4_cond_build': f({'condition'}, r'(建设|建筑|设置|配备|配置|设计|改造)'),
 # 5 only-limit lines
 'r5_prov_limit': f({'provision'}, r'(不超过|不得|期限|最长|仅限|累计|原则上不|最高)', no=r'(给予|资助|奖补|贴息|扶持|建设|鼓励|支持|可申请|可享受|安排)', maxlen=80),
 'r5_proc_cap': f({'procedure'}, r'(不超过|最高|累计|仅限|不得享受|只能)'),
 # 6 non-stacking / precedence
 'r6_stack': f({'provision','procedure','principle','title'}, r'(不重复|重复享受|就高|从高|同一(企业|项目|事项|单位)[^。]{0,15}(只|仅|不))'),
 'r6_prec': f({'condition','provision'}, r'(为准|从其规定|另有规定)'),
 # 7 validity
 'r7_valid': f({'provision','condition','title','principle'}, r'(有效期|起施行|废止|起执行|届满|施行)'),
 'r7_benefit_dur': f({'procedure'}, r'(有效期)', no=r'(本(办法|政策|措施|细则|意见|通知|规定|方案)|施行|执行)'),
 # 8 applying / contact
 'r8_title_apply': f({'title'}, r'(渠道|登录|小程序|网上|在线|提交|申请时限|申报时间|截止|窗口|受理|填写|报送)'),
 'r8_proc_contact': f({'procedure'}, r'(联系人|联系电话|咨询电话|电话|邮箱|地址)'),
 'r8_cond_time': f({'condition'}, r'(申请时限|申报时间|截止|之日起[^。]{0,10}内(提出|申请|申报)|逾期|每年[^。]{0,8}(申报|申请))'),
 'r8_prov_apply': f({'provision'}, r'(申报渠道|申请渠道|登录|小程序|网上申报|在线申报|申请时限)'),
 # 9 consultation
 'r9_consult': f({'procedure','provision','principle','condition'}, r'征求意见'),
 # 10 criteria
 'r10_criteria': f({'condition','provision'}, r'(考察|评审重点|评分|侧重|评价指标)'),
 # 11 principle items
 'r11_prin_tasks': f({'principle'}, r'(建设|完善|加强|推动|推进|打造|实施|开展|引进|培育|支持)', no=r'(坚持|为指导|原则|指导思想|贯彻|深入学习|制定本|特制定|现就|提出如下)', sec=r'(原则|思想|总体要求)'),
 'r11_prov_jianchi': f({'provision'}, r'^([^。]{0,12}。)?坚持'),
 'r11_prov_in_principles': f({'provision'}, None, sec=r'(基本原则|指导思想)'),
 # 12 preference / violations
 'r12_pref': f({'procedure','condition'}, r'优先'),
 # 13 visions / targets
 'r13_target_vision': f({'target'}, None, no=r'(20\d\d|到|力争|\d|目标)', sec=r'(思想|原则|总体要求)'),
 'r13_target_ideology': f({'target'}, None, sec=r'(指导思想)'),
 'r13_prin_dated': f({'principle'}, r'(到20\d\d年|力争|到\d{4})'),
 # 14 news
 'r14_title_news': f({'title'}, r'(其中提出|提出，到|到20\d\d年|力争|给予|万元)'),
 # 15 definitions
 'r15_def': f({'provision','procedure','principle'}, r'(所称|是指|由[^。]{0,20}(两部分|三部分|组成|构成))'),
}
if __name__ == '__main__':
    allids = set()
    for k, v in S.items():
        print(k, len(v)); allids |= {r['id'] for r in v}
    print('union', len(allids))

# second round (wider), added after the first 556 were read
S2 = {
 'r1b_prov_admin': f({'provision'}, r'(拨付|兑现|审核|审定|备案|报送|复核|核实|核定|公示)', no=r'(给予|补助|补贴|奖励|资助|奖补|贴息|扶持|支持|鼓励|建设|推动|推进|培育|引进|打造|开展|实施|减免|免征|降低|优惠|提供)'),
 'r2b_proc_offer': f({'procedure'}, r'(给予|奖励|补助|补贴|资助)[^。]{0,30}(万元|%|％|元/)'),
 'r8b_proc_announce': f({'procedure'}, r'(现(将|就|开展|启动|组织)|特此(通知|公告)|开展[^。]{0,30}申报工作)'),
 'r8b_title_howto': f({'title'}, r'(申报方式|申报程序|申报流程|申请方式|受理时间|申报时间|申报地点|提交材料|报送材料|网上申报|登录)'),
 'r11b_prin_tasks': f({'principle'}, r'(鼓励|支持|给予|建设|培育|引进|设立|实施)', no=r'(坚持|为指导|指导思想|贯彻|制定本|特制定|现就|提出如下|截至|已经|已有|成为|是指|预计|据)', sec=r'(任务|措施|工程|行动|专栏|政策)'),
 'r13b_target_nodate': f({'target'}, None, no=r'(20\d\d|到|力争|\d|目标|届时|基本|初步|显著|明显|逐步|进一步|形成|建成)'),
}

# third round (provisions, wider), after round two
TASK = r'(给予|补助|补贴|奖励|资助|奖补|贴息|扶持|支持|鼓励|建设|建立|推动|推进|培育|引进|打造|开展|实施|减免|免征|降低|优惠|提供|加快|加强|完善|发展|设立|组织|举办|培训|引导|促进|优先|享受|可申请|搭建|布局|争取|落实|深化|探索|强化|提升|实行|推广|创新|服务)'
S3 = {
 'r3b_prov_must': f({'provision'}, r'(应|须|必须|不得|严禁|禁止)', no=TASK),
 'r3c_prov_short': f({'provision'}, None, no=TASK, maxlen=60),
}

# fourth round: every remaining procedure and title record (all of the procedure/title side of rules 1-10)
S4 = {
 'r4_all_procedure': f({'procedure'}, None),
 'r4_all_title': f({'title'}, None),
}
S4['r4_all_condition'] = f({'condition'}, None)
S4['r4_all_target'] = f({'target'}, None)
S4['r4_all_principle'] = f({'principle'}, None)
S4['r14b_prov_news'] = f({'provision'}, r'(印发|出台|发布|出炉|获悉|日电|记者|近日)')
S4['r1c_prov_duty_short'] = f({'provision'}, r'(负责|牵头|会同|组织实施|责任单位|职责)', maxlen=100)
S4['r4b_prov_std'] = f({'provision'}, r'(不少于|不低于|不小于|不超过|以上)', no=r'(给予|补助|补贴|奖励|资助|奖补|贴息|扶持|支持|鼓励|万元|%)', maxlen=120)
