// The component's entry point: the `columnar` export of the extractor.

import { columnar as exportOf } from "strata-sdk/component";
import { WordStats } from "./word-stats.js";

export const columnar = exportOf(WordStats);
