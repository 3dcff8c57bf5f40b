// Render every math span given on stdin (a JSON list of strings) with KaTeX; print a JSON list
// of {index, error} for those KaTeX rejects. Usage: node katex_check.js <katex module dir>
const katex = require(process.argv[2]);
let input = "";
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const spans = JSON.parse(input);
  const errors = [];
  spans.forEach((tex, index) => {
    try {
      katex.renderToString(tex, { displayMode: true, throwOnError: true, strict: "error" });
    } catch (e) {
      errors.push({ index, error: String(e.message || e) });
    }
  });
  process.stdout.write(JSON.stringify(errors));
});
