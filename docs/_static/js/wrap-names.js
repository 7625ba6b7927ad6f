// Long dotted names in the navigation and page titles (module pages such as
// grassmann_cls.training.data.imagefolder) may break after a dot, never inside a word.
document.addEventListener("DOMContentLoaded", () => {
  for (const code of document.querySelectorAll(".sidebar-tree code, .toc-tree code, article h1 code")) {
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    const texts = [];
    while (walker.nextNode()) texts.push(walker.currentNode);
    for (const text of texts) {
      if (!text.data.includes(".")) continue;
      const pieces = document.createDocumentFragment();
      text.data.split(".").forEach((part, i) => {
        if (i) pieces.append(".", document.createElement("wbr"));
        pieces.append(part);
      });
      text.replaceWith(pieces);
    }
  }
});
