"""Multilingual document pages with ground truth: German and French with
their diacritics, simplified Chinese (a few traditional characters) and
mixed scripts (Chinese with Latin words and numbers on one line).

12 deterministic pages, 600-1300 px a side, each a letter, a table (an
invoice) or a form, scanned like testsets/documents.py (blur, noise, JPEG).
Every line drawn is recorded (`DocumentPage.lines`, testsets/ground_truth.py);
a table cell is a line of its own. The sentences are made here from short
phrase lists, so they read like real text and vary from page to page.

Latin text is drawn in DejaVu, Chinese and mixed lines in Debian's Noto CJK
(the simplified Chinese face of its .ttc files; `make fonts` installs
fonts-noto-cjk). Every character drawn is one PP-OCRv6's recogniser knows
(tests/test_ocr_ground_truth.py checks it against the model's dictionary);
PP-OCRv4's smaller dictionary lacks the diacritics and some of the rest, by
design: the set measures what a recogniser cannot read too."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from PIL import ImageFont

from testsets.documents import DocumentPage, Page, scanned
from testsets.ocr import font

CJK_DIR = Path("/usr/share/fonts/opentype/noto")
CJK_FONTS = ["NotoSansCJK-Regular.ttc", "NotoSerifCJK-Regular.ttc", "NotoSansCJK-Bold.ttc"]  # faces 0 1 2 as the Latin ones
CJK_SIMPLIFIED_FACE = 2  # the .ttc faces: JP, KR, SC, TC, HK
LATIN_FONTS = [0, 1, 3]  # testsets.ocr.font: DejaVu Sans, Serif, Sans Bold
BOLD = 2
PAGE_COUNT = 12
LAYOUTS = ("letter", "table", "form")


def cjk_fonts_missing() -> str | None:
    """Why the Chinese pages cannot be drawn here, or None."""
    missing = [name for name in CJK_FONTS if not (CJK_DIR / name).is_file()]
    return f"{', '.join(missing)} missing from {CJK_DIR}: `make fonts` installs Debian's fonts-noto-cjk" if missing else None


@lru_cache(maxsize=64)
def cjk_font(size: int, face: int = 0) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(CJK_DIR / CJK_FONTS[face % len(CJK_FONTS)]), size, index=CJK_SIMPLIFIED_FACE)


def latin_font(size: int, face: int = 0) -> ImageFont.FreeTypeFont:
    return font(size, LATIN_FONTS[face % len(LATIN_FONTS)])


@dataclass(frozen=True)
class Language:
    code: str
    fonts: Callable[[int, int], ImageFont.FreeTypeFont]
    headings: tuple[str, ...]
    sentence: Callable[[random.Random], str]
    joiner: str  # between sentences
    columns: tuple[str, str, str, str]  # item, quantity, price, amount
    items: tuple[str, ...]
    total: str
    places: tuple[str, ...]
    fields: tuple[tuple[str, tuple[str, ...]], ...]  # a form's labels, each with the values it may hold; the first: names
    money: Callable[[random.Random], str]
    date: Callable[[random.Random], str]

    def paragraph(self, rng: random.Random, count: int) -> str:
        return self.joiner.join(self.sentence(rng) for _ in range(count))


def _clauses(*clauses: tuple[str, ...], joiner: str = " ") -> Callable[[random.Random], str]:
    """Sentences of one phrase from each list, in order."""
    return lambda rng: joiner.join(rng.choice(phrases) for phrases in clauses)


def _euro_date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.20{rng.randint(18, 27)}"


def _french_date(rng: random.Random) -> str:
    months = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"]
    return f"{rng.randint(1, 28)} {rng.choice(months)} 20{rng.randint(18, 27)}"


def _chinese_date(rng: random.Random) -> str:
    return f"20{rng.randint(18, 27)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"


def _mixed_line(rng: random.Random) -> str:
    """Chinese with Latin words, codes and numbers on one line."""
    code = f"{rng.choice('ABCKMX')}-{rng.randint(2018, 2027)}-{rng.randint(1, 9999):04d}"
    return rng.choice([
        f"订单号 {code}，共 {rng.randint(2, 90)} 件，总价 {rng.randint(100, 9999)}.{rng.randint(0, 99):02d} 元",
        f"请访问 www.{rng.choice(['example', 'triton-docs', 'ocr-test'])}.com 下载 PDF 文件",
        f"会议时间：{_chinese_date(rng)} {rng.randint(8, 18)}:{rng.choice(['00', '15', '30', '45'])}，地点：{rng.choice(['Berlin', 'Paris', 'Zürich', 'Lyon'])} 办公室",
        f"产品型号 {rng.choice(['RX', 'TX', 'QL'])}-{rng.randint(100, 990)} 支持 USB-C 和 Wi-Fi {rng.choice([5, 6, 7])}",
        f"{rng.choice(['Müller', 'Dubois', 'Schmidt', 'Lefèvre', 'Brown'])} 先生于 {rng.randint(1, 12)} 月 {rng.randint(1, 28)} 日抵达{rng.choice(['上海', '北京', '深圳', '杭州'])}",
        f"本次 Python 培训共有 {rng.randint(12, 80)} 人参加，通过率 {rng.randint(60, 99)}%",
        f"客户 {rng.choice(['Keller', 'Weber', 'Novak', 'Martin'])} GmbH 的合同编号为 {code}",
        f"请将 Excel 表格于 {rng.randint(1, 12)} 月 {rng.randint(1, 28)} 日前发送至 {rng.choice(['info', 'office', 'sales'])}@example.com",
    ])


GERMAN = Language(
    code="de",
    fonts=latin_font,
    headings=("Rechnung", "Lieferschein für Möbel", "Jahresbericht der Geschäftsführung", "Anmeldung zur Prüfung", "Hinweise für Bürger", "Übersicht der Gebühren", "Protokoll der Sitzung"),
    sentence=_clauses(
        ("Der Kunde", "Die Geschäftsführerin", "Unser Büro in Köln", "Der Prüfer", "Die Bürgerin", "Das Team in München", "Der Hausmeister", "Die Bäckerei am Markt"),
        ("prüft", "übernimmt", "bestätigt", "liefert", "berücksichtigt", "erhält", "bezahlt", "überweist"),
        ("die Gebühren", "den Schlüssel", "alle Änderungen", "die Übergabe der Räume", "größere Mengen Käse", "die Rückzahlung", "zwölf Kartons Äpfel", "das Frühstück für Gäste", "den Vertrag »Wartung plus«"),
        ("bis Ende März.", "innerhalb von fünf Tagen.", "ohne zusätzliche Kosten.", "gemäß § 14 der Vereinbarung.", "für das nächste Geschäftsjahr.", "nach Rücksprache mit dem Vorstand.", "vor der Übergabe.", "spätestens am Freitag…"),
    ),
    joiner=" ",
    columns=("Artikel", "Menge", "Preis", "Betrag"),
    items=("Bürostühle", "Schränke aus Eiche", "Kühlschrank", "Glühbirnen", "Türschlösser", "Müllbeutel", "Fußmatten", "Gemüsekisten", "Schreibtischlampe", "Rührgerät für Küche"),
    total="Gesamtbetrag",
    places=("Köln", "München", "Düsseldorf", "Lübeck", "Göttingen", "Saarbrücken"),
    fields=(
        ("Name", ("Jürgen Müller", "Özlem Schäfer", "Björn Weiß", "Käthe Kröger")),
        ("Straße", ("Schloßallee 12", "Mühlengasse 7", "Königsweg 3a", "Lindenstraße 41")),
        ("Postleitzahl und Ort", ("50667 Köln", "80331 München", "40213 Düsseldorf", "23552 Lübeck")),
        ("Geburtsdatum", ("03.11.1985", "29.02.1996", "17.07.1972")),
        ("Staatsangehörigkeit", ("deutsch", "österreichisch", "schweizerisch")),
        ("Telefon", ("0221 4711 0815", "+49 89 123 456", "030 987 65 43")),
        ("Bemerkungen", ("Rückruf erwünscht", "Schlüssel beim Nachbarn", "keine", "Lieferung über den Hof")),
    ),
    money=lambda rng: f"{rng.randint(1, 4999)},{rng.randint(0, 99):02d} €",
    date=_euro_date,
)

FRENCH = Language(
    code="fr",
    fonts=latin_font,
    headings=("Facture", "Bon de livraison", "Rapport annuel de la société", "Fiche d'inscription", "Avis aux résidents", "Procès-verbal de la réunion", "Tarifs et conditions générales"),
    sentence=_clauses(
        ("Le client", "La directrice", "Notre équipe à Genève", "Le comité d'hygiène", "La sœur du gérant", "Le propriétaire", "L'élève", "Le maître d'œuvre"),
        ("vérifie", "reçoit", "prépare", "achète", "complète", "présente", "répète", "corrige"),
        ("les pièces détachées", "le reçu de caisse", "une fenêtre en façade", "les clés du bâtiment", "la déclaration fiscale", "le cahier des charges", "les travaux de rénovation", "un gâteau à la crème", "les chambres de l'hôtel"),
        ("avant la fin de l'année.", "dès réception de la facture.", "à la réunion de jeudi.", "sans frais supplémentaires.", "selon l'article 12 du contrat.", "pour le projet « Cœur de ville ».", "dès que possible…", "après l'été, où qu'il soit.", "avant les fêtes de Noël."),
    ),
    joiner=" ",
    columns=("Désignation", "Qté", "Prix", "Montant"),
    items=("Fenêtres en chêne", "Crème brûlée", "Pièces de rechange", "Câble électrique", "Étagère murale", "Bière blonde", "Pâtes fraîches", "Œufs bio", "Tissu façonné", "Chaîne hi-fi"),
    total="Total TTC",
    places=("Besançon", "Orléans", "Nîmes", "Genève", "Montréal", "Angoulême"),
    fields=(
        ("Nom et prénom", ("François Lefèvre", "Hélène Géraud", "Noël Bréhier", "Anaïs Dupré")),
        ("Adresse", ("12 rue de l'Église", "3 place de la Grève", "8 allée des Châtaigniers", "27 quai de la Saône")),
        ("Ville", ("Besançon", "Orléans", "Nîmes", "Genève")),
        ("Né(e) le", ("14 août 1987", "1er décembre 1990", "23 février 1978")),
        ("Nationalité", ("française", "belge", "suisse", "québécoise")),
        ("Profession", ("ingénieure", "électricien", "pâtissier", "médecin généraliste")),
        ("Remarques", ("à rappeler après 18 h", "dossier complet", "pièce d'identité à fournir", "réglé par chèque")),
    ),
    money=lambda rng: f"{rng.randint(1, 4999)},{rng.randint(0, 99):02d} €",
    date=_french_date,
)

CHINESE = Language(
    code="zh",
    fonts=cjk_font,
    headings=("年度工作报告", "销售发票", "员工通知", "会议纪要", "产品价格表", "报名登记表", "營業報告"),
    sentence=_clauses(
        ("本公司", "财务部", "项目组", "客户服务中心", "各位同事", "市场部", "技术支持团队", "董事会"),
        ("下周一", "本月底前", "明天上午", "每年三月", "今天下午", "国庆节后", "第二季度"),
        ("召开年度工作会议", "提交季度财务报告", "完成系统升级", "发放员工福利", "检查仓库安全设施", "更新产品价格表", "安排新员工培训", "整理客户资料"),
        ("。", "，请大家准时参加。", "，如有疑问请联系行政部。", "，具体安排另行通知。", "，感谢各位的支持！"),
        joiner="",
    ),
    joiner="",
    columns=("商品名称", "数量", "单价", "金额"),
    items=("办公椅", "打印纸", "笔记本电脑", "茶叶礼盒", "文件柜", "电风扇", "饮用水", "会议桌", "台灯", "雨伞"),
    total="合计金额",
    places=("北京", "上海", "广州", "深圳", "杭州", "南京"),
    fields=(
        ("姓名", ("张伟", "王芳", "李娜", "刘洋", "陈静")),
        ("性别", ("男", "女")),
        ("出生日期", ("1988年5月12日", "1995年11月3日", "1979年2月28日")),
        ("联系电话", ("138 0013 8000", "021 6288 1234", "0755 8866 5544")),
        ("家庭住址", ("北京市朝阳区建国路", "上海市浦东新区世纪大道", "广州市天河区体育西路")),
        ("工作单位", ("华东电力设计院", "人民医院", "第一中学", "自由职业")),
        ("备注", ("无", "已缴费", "需要发票", "下周复诊")),
    ),
    money=lambda rng: f"¥{rng.randint(1, 4999)}.{rng.randint(0, 99):02d}",
    date=_chinese_date,
)

MIXED = Language(
    code="mixed",
    fonts=cjk_font,
    headings=("项目进度 Project Status", "客户名单 Client List", "技术参数 Specifications", "会议通知 Meeting Notice"),
    sentence=lambda rng: _mixed_line(rng) + "。",
    joiner="",
    columns=("型号 Model", "数量 Qty", "单价 Price", "金额 Amount"),
    items=("LED 显示屏", "USB-C 数据线", "Wi-Fi 路由器", "A4 打印纸", "HDMI 转换器", "SSD 固态硬盘 512GB", "iPad 保护套", "Type-C 充电器"),
    total="合计 Total",
    places=("上海 Shanghai", "北京 Beijing", "Berlin 柏林", "Paris 巴黎"),
    fields=(
        ("姓名 Name", ("Anna Weber 王安娜", "Li Ming 李明", "Pierre Dubois 杜布瓦", "Zhang Wei 张伟")),
        ("公司 Company", ("Triton AI 有限公司", "Keller GmbH 上海分公司", "华为 Huawei", "Lyon Export 贸易公司")),
        ("邮箱 E-mail", ("office@example.com", "li.ming@example.cn", "sales@ocr-test.com")),
        ("电话 Phone", ("+49 30 1234 5678", "+86 21 6288 1234", "+33 4 72 00 11 22")),
        ("日期 Date", ("2026年3月15日", "2025-11-08", "2027年1月2日")),
        ("备注 Notes", ("VIP 客户", "需要 PDF 发票", "已付款 paid", "请用 English 回复")),
    ),
    money=lambda rng: f"{rng.randint(1, 4999)}.{rng.randint(0, 99):02d} EUR",
    date=_chinese_date,
)
LANGUAGES = (GERMAN, FRENCH, CHINESE, MIXED)
LANGUAGES = (GERMAN, FRENCH, CHINESE, MIXED)

# A word of Latin letters or digits stays whole; a CJK character stands alone;
# closing punctuation stays with what it follows (never starts a line).
_UNITS = re.compile(r"\s+|[^\s\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+[，。、：；！？）]*|\S[，。、：；！？）]*")


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy line breaking at spaces and between CJK characters."""
    lines, line = [], ""
    for unit in _UNITS.findall(text):
        if line.strip() and face.getlength((line + unit).rstrip()) > width:
            lines.append(line.strip())
            line = unit.lstrip()
        else:
            line += unit
    return [*lines, line.strip()] if line.strip() else lines


def _heading(page: Page, language: Language, text: str, size: int) -> None:
    """A heading on one line: smaller where it would not fit."""
    while size > 14 and language.fonts(size, BOLD).getlength(text) > page.width - 2 * page.margin:
        size -= 2
    page.text(page.margin, text, size, BOLD, advance=1.6)


def _paragraph(page: Page, language: Language, x: int, width: int, size: int, face: int) -> None:
    for line in wrap(language.paragraph(page.rng, page.rng.randint(1, 3)), language.fonts(size, face), width):
        if not page.room(size):
            return
        page.text(x, line, size, face, advance=1.6)
    page.y += size // 2


def _letter(page: Page, language: Language) -> None:
    rng, m = page.rng, page.margin
    _heading(page, language, rng.choice(language.headings), rng.randint(26, 36))
    page.text(m, f"{rng.choice(language.places)}  {language.date(rng)}", 15, advance=2.0)
    page.rule()
    size, face = rng.randint(15, 20), rng.choice([0, 1])
    while page.room(size * 2):
        if rng.random() < 0.15:
            _heading(page, language, rng.choice(language.headings), size + 4)
        _paragraph(page, language, m, page.width - 2 * m, size, face)


def _table(page: Page, language: Language) -> None:
    rng, m = page.rng, page.margin
    _heading(page, language, rng.choice(language.headings), rng.randint(26, 36))
    page.text(m, f"{rng.choice(language.fields[0][1])}   {language.date(rng)}", 16, advance=2.0)
    page.rule()
    columns = [m, int(page.width * 0.5), int(page.width * 0.63), int(page.width * 0.8)]
    size = rng.randint(15, 20)
    for x, head in zip(columns, language.columns):
        page.write(x, page.y, head, size, BOLD)
    page.y += int(size * 1.8)
    page.rule()
    face = language.fonts(size, 0)
    while page.room(size * 4) and page.y < page.height * 0.75:
        cells = [wrap(rng.choice(language.items), face, columns[1] - m - 12)[0], str(rng.randint(1, 60)), language.money(rng), language.money(rng)]
        for x, cell in zip(columns, cells):
            page.write(x, page.y, cell, size)
        page.y += int(size * 1.9)
    page.rule()
    page.text(columns[1], f"{language.total}  {language.money(rng)}", size, BOLD)
    if page.room(size * 2):
        _paragraph(page, language, m, page.width - 2 * m, 14, 0)


def _form(page: Page, language: Language) -> None:
    rng, m = page.rng, page.margin
    _heading(page, language, rng.choice(language.headings), rng.randint(24, 34))
    _paragraph(page, language, m, page.width - 2 * m, 14, 1)
    page.y += 8  # CJK glyphs sit lower than Latin ones: room above the first field's box
    size = rng.randint(15, 19)
    box_x = int(page.width * 0.4)
    box_height = int(size * 2.3)  # Noto CJK sets glyphs lower than DejaVu: room below them
    field = 0
    while page.room(size * 3):
        label, values = language.fields[field % len(language.fields)]
        field += 1
        page.write(m, page.y, wrap(label, language.fonts(size, 0), box_x - m - 10)[0], size)
        page.draw.rectangle((box_x, page.y - 6, page.width - m, page.y - 6 + box_height), outline=(120, 120, 120))
        value = wrap(rng.choice(values), language.fonts(size, 1), page.width - m - box_x - 16)[0]
        page.write(box_x + 8, page.y, value, size, 1, fill=(20, 30, 90))
        page.y += box_height + rng.randint(10, 20)


DRAW = {"letter": _letter, "table": _table, "form": _form}


@lru_cache(maxsize=2)
def _pages(count: int, seed: int) -> tuple[DocumentPage, ...]:
    rng = random.Random(seed)
    result = []
    for index in range(count):
        language = LANGUAGES[index % len(LANGUAGES)]
        layout = LAYOUTS[index // len(LANGUAGES) % len(LAYOUTS)]
        width = rng.randint(600, 1300)
        height = rng.randint(max(600, int(width * 0.8)), 1300)
        page = Page(rng, width, height, fonts=language.fonts)
        DRAW[layout](page, language)
        result.append(DocumentPage(f"{language.code}-{layout}-{index:02d}", scanned(page.image, rng), (width, height), page.lines))
    return tuple(result)


def pages(count: int = PAGE_COUNT, seed: int = 36) -> list[DocumentPage]:
    """`count` pages: German, French, Chinese, mixed, in turn; letters, then
    tables, then forms. Drawn once per process (needs the Noto CJK fonts)."""
    reason = cjk_fonts_missing()
    if reason:
        raise FileNotFoundError(reason)
    return list(_pages(count, seed))
