// Course subscriptions, the example of the DCB specification (dcb.events): courses with a
// capacity, students subscribing to them. The rule "the course is not full" is about the course,
// "at most 5 courses" about the student; a subscription is tagged with both, so one decision can
// guard both rules without an aggregate that owns courses and students alike.
import { defineCommandHandler, defineProjection, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. */
export type CourseSubscriptionEvents = {
  CourseDefined: { courseId: string; capacity: number };
  CourseCapacityChanged: { courseId: string; newCapacity: number };
  StudentSubscribedToCourse: { studentId: string; courseId: string };
};

export const courseTag = (courseId: string): string => `course:${courseId}`;
export const studentTag = (studentId: string): string => `student:${studentId}`;

export function courseDefined(courseId: string, capacity: number): EventInput<CourseSubscriptionEvents['CourseDefined']> {
  return { type: 'CourseDefined', tags: [courseTag(courseId)], data: { courseId, capacity } };
}

export function courseCapacityChanged(courseId: string, newCapacity: number): EventInput<CourseSubscriptionEvents['CourseCapacityChanged']> {
  return { type: 'CourseCapacityChanged', tags: [courseTag(courseId)], data: { courseId, newCapacity } };
}

/** Part of the course's history and of the student's: it carries both tags. */
export function studentSubscribedToCourse(studentId: string, courseId: string): EventInput<CourseSubscriptionEvents['StudentSubscribedToCourse']> {
  return { type: 'StudentSubscribedToCourse', tags: [studentTag(studentId), courseTag(courseId)], data: { studentId, courseId } };
}

// ---------------------------------------------------------------------------------------------
// Errors

export const MAX_COURSES_PER_STUDENT = 5;

export type CourseSubscriptionErrorCode =
  | 'COURSE_ALREADY_DEFINED'
  | 'COURSE_NOT_FOUND'
  | 'COURSE_CAPACITY_UNCHANGED'
  | 'COURSE_FULL'
  | 'STUDENT_ALREADY_SUBSCRIBED'
  | 'STUDENT_SUBSCRIPTION_LIMIT_REACHED';

/** A rule rejected the command; nothing was appended, and repeating it will not help. */
export class CourseSubscriptionError extends Error {
  readonly code: CourseSubscriptionErrorCode;

  constructor(code: CourseSubscriptionErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class CourseAlreadyDefinedError extends CourseSubscriptionError {
  constructor(readonly courseId: string) {
    super('COURSE_ALREADY_DEFINED', `course ${courseId} is already defined`);
  }
}

export class CourseNotFoundError extends CourseSubscriptionError {
  constructor(readonly courseId: string) {
    super('COURSE_NOT_FOUND', `course ${courseId} does not exist`);
  }
}

export class CourseCapacityUnchangedError extends CourseSubscriptionError {
  constructor(
    readonly courseId: string,
    readonly capacity: number,
  ) {
    super('COURSE_CAPACITY_UNCHANGED', `course ${courseId} has a capacity of ${capacity} already`);
  }
}

export class CourseFullError extends CourseSubscriptionError {
  constructor(
    readonly courseId: string,
    readonly capacity: number,
  ) {
    super('COURSE_FULL', `course ${courseId} is full (capacity ${capacity})`);
  }
}

export class StudentAlreadySubscribedError extends CourseSubscriptionError {
  constructor(
    readonly studentId: string,
    readonly courseId: string,
  ) {
    super('STUDENT_ALREADY_SUBSCRIBED', `student ${studentId} is already subscribed to course ${courseId}`);
  }
}

export class StudentSubscriptionLimitReachedError extends CourseSubscriptionError {
  constructor(readonly studentId: string) {
    super('STUDENT_SUBSCRIPTION_LIMIT_REACHED', `student ${studentId} is subscribed to ${MAX_COURSES_PER_STUDENT} courses already (the limit)`);
  }
}

export function isCourseSubscriptionError(error: unknown, code?: CourseSubscriptionErrorCode): error is CourseSubscriptionError {
  return error instanceof CourseSubscriptionError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections: one small fact each. A handler combines the ones its rules need; their queries
// together are what the decision depends on, and so what its append is guarded by.

export const courseExists = (courseId: string) =>
  defineProjection<boolean, CourseSubscriptionEvents>({
    initialState: false,
    handlers: { CourseDefined: () => true },
    tags: [courseTag(courseId)],
  });

/** 0 for a course not defined (a subscription fails on `courseExists` first). */
export const courseCapacity = (courseId: string) =>
  defineProjection<number, CourseSubscriptionEvents>({
    initialState: 0,
    handlers: {
      CourseDefined: (_, event) => event.data.capacity,
      CourseCapacityChanged: (_, event) => event.data.newCapacity,
    },
    tags: [courseTag(courseId)],
  });

export const courseSubscriptionCount = (courseId: string) =>
  defineProjection<number, CourseSubscriptionEvents>({
    initialState: 0,
    handlers: { StudentSubscribedToCourse: (count) => count + 1 },
    tags: [courseTag(courseId)],
  });

export const studentSubscriptionCount = (studentId: string) =>
  defineProjection<number, CourseSubscriptionEvents>({
    initialState: 0,
    handlers: { StudentSubscribedToCourse: (count) => count + 1 },
    tags: [studentTag(studentId)],
  });

/** Both tags on one item mean AND: only this student's subscription to this course. */
export const studentAlreadySubscribed = (studentId: string, courseId: string) =>
  defineProjection<boolean, CourseSubscriptionEvents>({
    initialState: false,
    handlers: { StudentSubscribedToCourse: () => true },
    tags: [studentTag(studentId), courseTag(courseId)],
  });

// ---------------------------------------------------------------------------------------------
// Commands

export interface DefineCourse {
  courseId: string;
  capacity: number;
}

export interface ChangeCourseCapacity {
  courseId: string;
  newCapacity: number;
}

export interface SubscribeStudentToCourse {
  studentId: string;
  courseId: string;
}

/**
 * Defines a course with the number of students it takes.
 *
 * Rule: a course is defined once ({@link CourseAlreadyDefinedError}).
 */
export const defineCourse = defineCommandHandler({
  projections: (command: DefineCourse) => ({ courseExists: courseExists(command.courseId) }),
  decide: (state, command) => {
    if (state.courseExists) throw new CourseAlreadyDefinedError(command.courseId);
    return courseDefined(command.courseId, command.capacity);
  },
});

/**
 * Sets a new capacity. Lowering it below the current subscriptions keeps them; it only refuses
 * new ones until there is room again.
 *
 * Rules: the course exists ({@link CourseNotFoundError}); the capacity changes
 * ({@link CourseCapacityUnchangedError}).
 */
export const changeCourseCapacity = defineCommandHandler({
  projections: (command: ChangeCourseCapacity) => ({
    courseExists: courseExists(command.courseId),
    capacity: courseCapacity(command.courseId),
  }),
  decide: (state, command) => {
    if (!state.courseExists) throw new CourseNotFoundError(command.courseId);
    if (state.capacity === command.newCapacity) throw new CourseCapacityUnchangedError(command.courseId, state.capacity);
    return courseCapacityChanged(command.courseId, command.newCapacity);
  },
});

/**
 * Subscribes a student to a course. The decision depends on the course's events and on the
 * student's subscriptions, and on nothing else: subscriptions to other courses by other students
 * never conflict with it.
 *
 * Rules: the course exists ({@link CourseNotFoundError}); the student is not subscribed to it yet
 * ({@link StudentAlreadySubscribedError}); the course is not full ({@link CourseFullError}); the
 * student has fewer than {@link MAX_COURSES_PER_STUDENT} subscriptions
 * ({@link StudentSubscriptionLimitReachedError}).
 */
export const subscribeStudentToCourse = defineCommandHandler({
  projections: (command: SubscribeStudentToCourse) => ({
    courseExists: courseExists(command.courseId),
    capacity: courseCapacity(command.courseId),
    courseSubscriptions: courseSubscriptionCount(command.courseId),
    studentSubscriptions: studentSubscriptionCount(command.studentId),
    alreadySubscribed: studentAlreadySubscribed(command.studentId, command.courseId),
  }),
  decide: (state, command) => {
    if (!state.courseExists) throw new CourseNotFoundError(command.courseId);
    if (state.alreadySubscribed) throw new StudentAlreadySubscribedError(command.studentId, command.courseId);
    if (state.courseSubscriptions >= state.capacity) throw new CourseFullError(command.courseId, state.capacity);
    if (state.studentSubscriptions >= MAX_COURSES_PER_STUDENT) throw new StudentSubscriptionLimitReachedError(command.studentId);
    return studentSubscribedToCourse(command.studentId, command.courseId);
  },
});
