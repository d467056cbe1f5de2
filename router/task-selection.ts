import {
  Kind,
  OperationTypeNode,
  print,
  visit,
  type ASTNode,
  type DefinitionNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type VariableDefinitionNode,
} from 'graphql';

/**
 * `TaskEvent.task` of a subscription is owned by every subgraph, so the router asks the gateway for
 * it with an ordinary query: `query ($taskId: ID!) { <key>: task(id: $taskId) { …the client's
 * selection… } }`. The selection is forwarded as written — aliases, fragments, directives and the
 * variables it uses — so the JSON that comes back is keyed exactly like the client's response.
 */
export interface TaskQuery {
  /** The printed operation, fragments included; the same client selection always prints the same. */
  query: string;
  operationName: string;
  /** The name of the variable that carries the task id (`taskId`, or with `_` appended if the client uses that name). */
  idVariable: string;
  /** The client's variables the selection uses, as coerced for the subscription. */
  variables: Record<string, unknown>;
}

export const TASK_QUERY_NAME = 'TaskEventTask';

const name = (value: string) => ({ kind: Kind.NAME, value }) as const;

/**
 * Builds the gateway query for one response key of `TaskEvent.task`. `fieldNodes` are the merged
 * `task` fields of that key (graphql-js hands them to the resolver), `operation` and `fragments` the
 * subscription's. With `addTypename`, every selection set also asks for `__typename`, which values
 * of abstract types need to be resolved from JSON.
 */
export function buildTaskQuery(options: {
  fieldNodes: readonly FieldNode[];
  responseKey: string;
  operation: OperationDefinitionNode;
  fragments: Readonly<Record<string, FragmentDefinitionNode>>;
  variableValues: Readonly<Record<string, unknown>>;
  addTypename?: boolean;
}): TaskQuery {
  const { fieldNodes, responseKey, operation, fragments, variableValues } = options;
  const usedVariables = new Set<string>();
  const usedFragments = new Set<string>();
  for (const node of fieldNodes) collectUses(node, fragments, usedVariables, usedFragments);

  const declared = new Set((operation.variableDefinitions ?? []).map((definition) => definition.variable.name.value));
  let idVariable = 'taskId';
  while (declared.has(idVariable)) idVariable += '_';

  const idDefinition: VariableDefinitionNode = {
    kind: Kind.VARIABLE_DEFINITION,
    variable: { kind: Kind.VARIABLE, name: name(idVariable) },
    type: { kind: Kind.NON_NULL_TYPE, type: { kind: Kind.NAMED_TYPE, name: name('ID') } },
  };
  const selections: FieldNode[] = fieldNodes.map((node) => ({
    kind: Kind.FIELD,
    alias: responseKey === 'task' ? undefined : name(responseKey),
    name: name('task'),
    arguments: [{ kind: Kind.ARGUMENT, name: name('id'), value: { kind: Kind.VARIABLE, name: name(idVariable) } }],
    directives: node.directives,
    selectionSet: node.selectionSet,
  }));
  const query: OperationDefinitionNode = {
    kind: Kind.OPERATION_DEFINITION,
    operation: OperationTypeNode.QUERY,
    name: name(TASK_QUERY_NAME),
    variableDefinitions: [idDefinition, ...(operation.variableDefinitions ?? []).filter((definition) => usedVariables.has(definition.variable.name.value))],
    directives: [],
    selectionSet: { kind: Kind.SELECTION_SET, selections },
  };
  // Sorted, so that equal selections print equal queries (the shared-fetch key and the plan cache).
  const definitions: DefinitionNode[] = [query, ...[...usedFragments].sort().flatMap((fragment) => (fragments[fragment] ? [fragments[fragment]] : []))];
  let document: ASTNode = { kind: Kind.DOCUMENT, definitions };
  if (options.addTypename) document = withTypename(document);

  const variables: Record<string, unknown> = {};
  for (const variable of usedVariables) if (variable in variableValues) variables[variable] = variableValues[variable];
  return { query: print(document), operationName: TASK_QUERY_NAME, idVariable, variables };
}

/** The variables and fragments a node uses, following fragment spreads (each fragment once). */
function collectUses(node: ASTNode, fragments: Readonly<Record<string, FragmentDefinitionNode>>, variables: Set<string>, used: Set<string>): void {
  visit(node, {
    Variable(variable) {
      variables.add(variable.name.value);
    },
    FragmentSpread(spread) {
      const fragment = spread.name.value;
      if (used.has(fragment)) return;
      used.add(fragment);
      if (fragments[fragment]) collectUses(fragments[fragment], fragments, variables, used);
    },
  });
}

const TYPENAME: FieldNode = { kind: Kind.FIELD, name: name('__typename') };

function withTypename(document: ASTNode): ASTNode {
  return visit(document, {
    SelectionSet(set: SelectionSetNode) {
      const has = set.selections.some((selection) => selection.kind === Kind.FIELD && !selection.alias && selection.name.value === '__typename');
      return has ? undefined : { ...set, selections: [...set.selections, TYPENAME] };
    },
  });
}
