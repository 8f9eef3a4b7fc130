// Parameters, declared once: the manifest's JSON Schema and the checks
// made when a session opens both come from the declarations.

/** Why a session could not be opened (anything but a bad parameter). */
export class OpenError extends Error {}

/** A parameter is missing, unknown or out of range. */
export class ParamError extends OpenError {
  constructor(param, message) {
    super(`parameter \`${param}\`: ${message}`);
    this.param = param;
    this.detail = message;
  }
}

/** A parameter an extractor accepts: `Param.uint`, `Param.boolean`, `Param.string`. */
export class Param {
  constructor(name, kind, defaultValue, description, extra = {}) {
    Object.assign(this, { name, kind, default: defaultValue, description, ...extra });
    Object.freeze(this);
  }

  /** An unsigned integer in `minimum..=maximum`, `defaultValue` when absent. */
  static uint(name, defaultValue, minimum, maximum, description) {
    if (!(minimum <= defaultValue && defaultValue <= maximum)) {
      throw new RangeError(`parameter \`${name}\`: default ${defaultValue} is outside ${minimum}..=${maximum}`);
    }
    return new Param(name, "uint", defaultValue, description, { minimum, maximum });
  }

  /** A boolean, `defaultValue` when absent. */
  static boolean(name, defaultValue, description) {
    return new Param(name, "bool", Boolean(defaultValue), description);
  }

  /** One of `choices`, `defaultValue` when absent. */
  static string(name, defaultValue, choices, description) {
    if (!choices.includes(defaultValue)) {
      throw new RangeError(`parameter \`${name}\`: default ${JSON.stringify(defaultValue)} is not one of ${choices.join(", ")}`);
    }
    return new Param(name, "string", defaultValue, description, { choices: [...choices] });
  }

  /** This parameter's JSON Schema. */
  schema() {
    if (this.kind === "uint") {
      return { type: "integer", minimum: this.minimum, maximum: this.maximum, default: this.default, description: this.description };
    }
    if (this.kind === "bool") {
      return { type: "boolean", default: this.default, description: this.description };
    }
    return { type: "string", enum: this.choices, default: this.default, description: this.description };
  }

  /** This parameter's value in `values`, checked, or its default. */
  read(values) {
    if (!Object.hasOwn(values, this.name)) return this.default;
    const value = values[this.name];
    if (this.kind === "uint") {
      if (!Number.isInteger(value)) throw new ParamError(this.name, `expected an integer, got ${kind(value)}`);
      if (value < this.minimum || value > this.maximum) {
        throw new ParamError(this.name, `must be between ${this.minimum} and ${this.maximum}, got ${value}`);
      }
      return value;
    }
    if (this.kind === "bool") {
      if (typeof value !== "boolean") throw new ParamError(this.name, `expected a boolean, got ${kind(value)}`);
      return value;
    }
    if (typeof value !== "string") throw new ParamError(this.name, `expected a string, got ${kind(value)}`);
    if (!this.choices.includes(value)) {
      throw new ParamError(this.name, `must be one of ${this.choices.join(", ")}, got ${JSON.stringify(value)}`);
    }
    return value;
  }
}

/** The JSON Schema of a parameters object made of `params` and nothing else. */
export function paramsSchema(params) {
  return {
    type: "object",
    additionalProperties: false,
    properties: Object.fromEntries(params.map((p) => [p.name, p.schema()])),
  };
}

/** The parameters in `text` (a JSON object; empty or `null` for none), checked against `declared`, defaults filled in. */
export function parseParams(text, declared) {
  let values = {};
  if (!["", "null"].includes(text.trim())) {
    try {
      values = JSON.parse(text);
    } catch (e) {
      throw new OpenError(`parameters are not valid JSON: ${e.message}`);
    }
    if (values === null || typeof values !== "object" || Array.isArray(values)) {
      throw new OpenError(`parameters must be a JSON object, got ${kind(values)}`);
    }
  }
  const names = declared.map((p) => p.name);
  const unknown = Object.keys(values).filter((k) => !names.includes(k)).sort();
  if (unknown.length > 0) {
    throw new ParamError(unknown[0], `unknown parameter (known: ${names.length ? names.join(", ") : "none"})`);
  }
  return Object.fromEntries(declared.map((p) => [p.name, p.read(values)]));
}

function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "boolean": return "a boolean";
    case "number": return "a number";
    case "string": return "a string";
    default: return "an object";
  }
}
