// MathJax reads only what pymdownx.arithmatex marked (class "arithmatex"), inside the \( \) and \[ \]
// delimiters that arithmatex writes; everything else on the page is left alone.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]]},
  options: {ignoreHtmlClass: ".*", processHtmlClass: "arithmatex"},
};
