"""List answers completed from the source list they name (``rag.listing``), on sentences of the corpus."""

from __future__ import annotations

import pytest

from rag.lang import item_name
from rag.listing import answer_items, complete, enumerations
from rag.types import Sentence


def sentence(text: str, start: int = 0) -> Sentence:
    return Sentence("doc", start, start + len(text), text, text, "")


RESULTS = sentence("要结果导向抓落实,要以目标为牵引,推动各项任务成果化、具象化、有形化,以实际成果交账。")
CONFLICTS = sentence("全力破解基础教育系统性、结构性、阶段性矛盾,加快推动形成结构合理、优质均衡、特色发展、覆盖全域的"
                     "现代化教育体系。")
SHOWCASES = sentence("重点实施好党建工作全面达标创优、学前教育普及普惠、义务教育优质均衡、普通高中优质特色发展、"
                     "特殊教育融合发展、教育数字化转型等六大示范。")
SCHOOLS = sentence("分期分批选派3—5名校长后备干部到盟蒙中、盟二中和锡市一中、六中等学校跟岗挂职锻炼,每期不少于两个月。")
FOCUSES = [sentence("要聚焦“三个优先”,在回应群众教育需求上不断深化。", 0),
           sentence("要聚焦内涵发展,在提升办学质量和水平上持续发力。", 30),
           sentence("要聚焦人才强校,持续抓好师德师风建设。", 60)]


@pytest.mark.parametrize(("answer", "shown", "count", "expected"), [
    # a miscopied item is replaced by the source's, whatever led into the list
    ("具象化、具体化、有形化", [RESULTS], 3, "成果化、具象化、有形化"),
    ("要结果导向抓落实，推动各项任务实现具象化、具体化、有形化。", [RESULTS], 3, "成果化、具象化、有形化"),
    # the first part loses the words leading into the list; the model's own words stay where they are the source's
    ("基础知识性矛盾、结构性矛盾、阶段性矛盾", [CONFLICTS], 0, "系统性、结构性、阶段性矛盾"),
    # a dropped item is put back, in the source's order
    ("党建工作全面达标创优、学前教育普及普惠、义务教育优质均衡、特殊教育融合发展、教育数字化转型", [SHOWCASES], 6,
     "党建工作全面达标创优、学前教育普及普惠、义务教育优质均衡、普通高中优质特色发展、特殊教育融合发展、教育数字化转型"),
    ("结构合理、优质均衡、特色发展", [CONFLICTS], 0, "结构合理、优质均衡、特色发展、覆盖全域"),
    # a part holding two items keeps both the model named; what follows 等 is no item
    ("盟蒙中、盟二中、锡市一中", [SCHOOLS], 0, "盟蒙中、盟二中、锡市一中、六中"),
])
def test_a_list_answer_is_completed_from_the_enumeration_it_names(answer: str, shown: list[Sentence], count: int,
                                                                   expected: str) -> None:
    assert complete(answer, shown, [], count) == expected


@pytest.mark.parametrize(("answer", "shown", "count"), [
    ("成果化、具象化、有形化。", [RESULTS], 3),                 # lacks nothing: left as written
    ("具象化、有形化。", [RESULTS], 4),                         # the enumeration is not of the asked size
    ("结构合理、教育质量。", [CONFLICTS], 0),                  # names one item only
    ("党建工作全面达标创优、学前教育普及普惠", [SHOWCASES], 0),  # two of six, number unknown: maybe a chosen few
    ("资料中没有找到答案。", [RESULTS], 3),
    ("锡市一中、锡市六中、盟蒙中、盟二中", [SCHOOLS], 0),       # names every school, in its own order
    ("盟蒙中、盟二中、兴安路小学、师大附中", [SCHOOLS], 0),      # draws on another list too: left whole
])
def test_an_answer_that_names_no_list_or_lacks_nothing_is_left_alone(answer: str, shown: list[Sentence],
                                                                     count: int) -> None:
    assert complete(answer, shown, [], count) == answer


def test_the_item_sentences_an_answer_lacks_are_added_by_their_heads() -> None:
    answer = "聚焦“三个优先”，在回应群众教育需求上不断深化、聚焦内涵发展，在提升办学质量和水平上持续发力。"
    assert complete(answer, FOCUSES, FOCUSES) == answer[:-1] + "；要聚焦人才强校"
    assert complete(answer, FOCUSES, FOCUSES, count=4) == answer  # not the structure asked for
    assert complete("聚焦“三个优先”。", FOCUSES, FOCUSES) == "聚焦“三个优先”。"  # one item named: no list chosen


def test_only_the_last_two_parts_may_be_joined_by_a_word() -> None:
    assert [e.parts for e in enumerations([sentence("学前教育普及普惠、义务教育优质均衡和普通高中多样发展")])] == \
        [("学前教育普及普惠", "义务教育优质均衡", "普通高中多样发展")]  # 普及 is one word, not 普|及


def test_answer_items_and_heads_drop_numbering() -> None:
    assert answer_items("1. 坚持党建引领；2. 坚持改革创新\n一是安全发展") == \
        ["坚持党建引领", "坚持改革创新", "安全发展"]
    assert item_name("（一）坚持党建引领，凝聚教育发展持久原动力。") == "坚持党建引领"
    assert item_name("一是加强学习，提高认识。") == "加强学习"
