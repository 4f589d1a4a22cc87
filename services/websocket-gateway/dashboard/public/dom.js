// Small DOM builders the panels share: table rows and cells, list items (text only: never HTML from the bus).

export function row(cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

export function cell(text, className = "", span = 1) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (span > 1) td.colSpan = span;
  return td;
}

export function item(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}
