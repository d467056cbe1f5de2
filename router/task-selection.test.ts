import { Kind, parse, print, type FieldNode, type FragmentDefinitionNode, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { buildTaskQuery } from './task-selection.js';

/** The `task` fields directly under the root field of a subscription document, and its parts. */
function parts(source: string) {
  const document = parse(source);
  const operation = document.definitions.find((definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION)!;
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
  const root = operation.selectionSet.selections[0] as FieldNode;
  const taskFields = (set: SelectionSetNode): FieldNode[] =>
    set.selections.flatMap((selection) => {
      if (selection.kind === Kind.FIELD) return selection.name.value === 'task' ? [selection] : [];
      if (selection.kind === Kind.INLINE_FRAGMENT) return taskFields(selection.selectionSet);
      return taskFields(fragments[selection.name.value].selectionSet);
    });
  return { operation, fragments, fieldNodes: taskFields(root.selectionSet!) };
}

const normalize = (query: string) => print(parse(query));

describe('buildTaskQuery', () => {
  it('forwards the selection under `task` with its alias, fragments and variables, and nothing else', () => {
    const { operation, fragments, fieldNodes } = parts(`
      subscription ($id: ID!, $withAgent: Boolean = true, $unused: Int) {
        taskEvents(taskId: $id) { delta ...E job: task { status ...T } }
      }
      fragment E on TaskEvent { sequence }
      fragment T on Task { agent @include(if: $withAgent) { ...A } }
      fragment A on Agent { label: name }
      fragment Unrelated on Task { id }
    `);
    const built = buildTaskQuery({ fieldNodes, responseKey: 'job', operation, fragments, variableValues: { id: 'x', withAgent: true, unused: 3 } });
    expect(built.query).toBe(
      normalize(`
        query TaskEventTask($taskId: ID!, $withAgent: Boolean = true) { job: task(id: $taskId) { status ...T } }
        fragment A on Agent { label: name }
        fragment T on Task { agent @include(if: $withAgent) { ...A } }
      `),
    );
    expect(built).toMatchObject({ operationName: 'TaskEventTask', idVariable: 'taskId', variables: { withAgent: true } });
  });

  it('merges every `task` field of one response key, keeping their directives', () => {
    const { operation, fragments, fieldNodes } = parts(`
      subscription ($full: Boolean!) { taskEvents(taskId: "t") { task { id } ... on TaskEvent { task @include(if: $full) { output } } } }
    `);
    const built = buildTaskQuery({ fieldNodes, responseKey: 'task', operation, fragments, variableValues: { full: false } });
    expect(built.query).toBe(normalize('query TaskEventTask($taskId: ID!, $full: Boolean!) { task(id: $taskId) { id } task(id: $taskId) @include(if: $full) { output } }'));
    expect(built.variables).toEqual({ full: false });
  });

  it('picks another name for the task id when the client already uses $taskId, and can ask for __typename everywhere', () => {
    const { operation, fragments, fieldNodes } = parts(`
      subscription ($taskId: ID!, $taskId_: Int) { taskEvents(taskId: $taskId, afterSequence: $taskId_) { task { agent { name } } } }
    `);
    const built = buildTaskQuery({ fieldNodes, responseKey: 'task', operation, fragments, variableValues: { taskId: 'a' }, addTypename: true });
    expect(built.idVariable).toBe('taskId__');
    expect(built.query).toBe(normalize('query TaskEventTask($taskId__: ID!) { task(id: $taskId__) { agent { name __typename } __typename } __typename }'));
    expect(built.variables).toEqual({});
  });

  it('prints the same query for the same selection', () => {
    const source = 'subscription { taskEvents(taskId: "t") { task { ...B ...A } } } fragment A on Task { id } fragment B on Task { status }';
    const one = parts(source);
    const two = parts(source);
    const build = (p: ReturnType<typeof parts>) => buildTaskQuery({ ...p, responseKey: 'task', variableValues: {} }).query;
    expect(build(one)).toBe(build(two));
    expect(build(one).indexOf('fragment A')).toBeLessThan(build(one).indexOf('fragment B'));
  });
});
