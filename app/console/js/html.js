// Views are Preact components written with htm's tagged templates: no build step.
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
