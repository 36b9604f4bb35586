"""Small real documents for the ``care-edge index`` tests: a PDF with a text layer (written byte by byte, the
way a PDF producer does), DOCX through python-docx, and text in the encodings users' folders hold."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: Sequence[Sequence[str]]) -> Path:
    """A PDF whose pages show the given lines in Helvetica (a text layer, as a word processor's export has).
    A page given no lines has no text at all, as a scanned page without OCR."""
    objects: list[bytes] = []
    n_pages = len(pages)
    page_ids = [4 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        content_id = page_ids[i] + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {content_id} 0 R >>".encode())
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def write_encrypted_pdf(path: Path, source: Path, password: str = "secret") -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(str(source)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def write_docx(path: Path, sections: Sequence[tuple[str, Sequence[str]]], table: Sequence[Sequence[str]] = ()) -> Path:
    """A DOCX with a Heading 1 per section and its paragraphs, and optionally a table."""
    import docx

    document = docx.Document()
    document.add_heading("Formulary", level=0)  # the Title style
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    document.save(str(path))
    return path


# Real-looking medical text: MedQuAD-style answers (English) and a doctor's answer (Chinese).
AMOXICILLIN = (
    "Amoxicillin is a penicillin antibiotic. It is used to treat bacterial infections such as pneumonia, "
    "bronchitis and infections of the ear, nose, throat, skin and urinary tract."
)
AMOXICILLIN_DOSE = (
    "Adults take 500 mg every 8 hours or 875 mg every 12 hours. Children over 3 months take 20 to 40 mg/kg/day "
    "in divided doses every 8 hours."
)
GLAUCOMA = (
    "Glaucoma is a group of diseases that can damage the eye's optic nerve and result in vision loss and "
    "blindness. Open-angle glaucoma is the most common form."
)
HYPERTENSION_ZH = "高血压患者应当低盐饮食，每日食盐摄入量不超过6克，并坚持适量运动，控制体重，戒烟限酒。"
DIABETES_ZH = "糖尿病患者要注意监测血糖，按时服药，饮食上少吃甜食和精制米面，多吃蔬菜。"
