// Allure 3 configuration of the HTML report. `python -m harness.report` runs
// `allure generate` with it; paths are relative to this file, not to the cwd.
// A plain object (no `defineConfig` import): the config must load even where
// the allure package is not resolvable from this folder.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
// Stacks of the results being reported (set by harness.report from their
// `stack` labels): with more than one, each is an Allure environment.
const stacks = (process.env.TCPCONF_STACKS || "").split(",").filter(Boolean);
const onStack = (stack) => ({ labels }) => labels.some((l) => l.name === "stack" && l.value === stack);

export default {
  // the run's verdict (harness.report sets it): passes, documented deviations
  // and how many depart from MUST rules, failures; the first thing a reader sees
  name: process.env.TCPCONF_REPORT_NAME || "tcpconf: TCP conformance",
  output: process.env.TCPCONF_REPORT_OUTPUT || here("./html"),
  // next to the report (reports/history/ by default), so a report built
  // elsewhere (--out) keeps its own history
  historyPath: process.env.TCPCONF_REPORT_HISTORY || here("./history/history.jsonl"),
  historyLimit: 100,
  // the pages harness.report builds beside the report (matrix, claims...):
  // inside it too, under "Global Attachments" on its start page
  globalAttachments: (process.env.TCPCONF_REPORT_PAGES || "").split("\n").filter(Boolean),
  // labels allure-pytest adds that say nothing about TCP (host stays: runs
  // of several machines merge)
  // labels the page shows otherwise (epic: the breadcrumbs; family: a
  // parameter); feature and story stay, the tree groups by them
  hideLabels: ["thread", "framework", "language", "package", "parentSuite", "suite", "subSuite", "epic", "family"],
  // One source for the categories: Awesome reads them here, the allure2 and
  // classic plugins read the categories.json the suite copies into the results.
  // Within a category, results are grouped by the rule they fail or depart
  // from (the `rule` label), not by their long messages.
  categories: JSON.parse(readFileSync(here("./categories.json"), "utf8")).map((c) => ({
    ...c, groupBy: [{ label: "rule" }], groupByMessage: false, expand: true,
  })),
  environments: stacks.length > 1
    // an environment id is [A-Za-z0-9_-] only; its name shows the label as it is
    ? Object.fromEntries(stacks.map((s) => [s.replace(/[^A-Za-z0-9_-]/g, "_"), { name: s, matcher: onStack(s) }]))
    : undefined,
  plugins: {
    awesome: {
      options: {
        reportLanguage: "en",
        singleFile: true,       // one index.html that opens from file:// (multi-file needs a server)
        groupBy: ["feature", "story"],
        // a test page opens with its attachments shown: the ladder, the
        // diagram and the tcpdump views are what a reader comes for
        stepTreeExpansion: "expanded",
      },
    },
  },
};
